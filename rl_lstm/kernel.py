"""The compiled recurrent kernel: a whole chunk ``(T, B)`` of LSTM, GRU or tanh RNN steps per call, with episode
resets, every dropout site's masks and optional layer norm inside, and a hand-written backward
through time (``rl_lstm/csrc/lstm_chunk.cpp``, the GRU family's and the RNN's in ``gru_chunk.inc``); and the
linear recurrence ``s_t = a_t * s_{t-1} + b_t`` of the linear-recurrence memories, real or complex, forward and
backward (``linear_scan.inc``, called by :func:`rl_lstm.scan.linear_scan`); and the plain RMSprop step of
:class:`agents.lean.FusedRMSprop` (``rmsprop.inc``).

It is built at first use from the installed torch with ``torch.utils.cpp_extension.load`` and
cached (under ``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``), once per torch
installation: clones share it, and each virtual environment has its own. Where it cannot
run (no C++ compiler, a failed build, tensors not on the CPU, a dtype other than float32 or
float64) the cells keep their Python path, with one warning naming the reason.

The environment variable ``RL_LSTM_KERNEL`` chooses: ``auto`` (the default: the kernel where it
can run), ``0`` (never: the Python path, e.g. to compare) or ``1`` (always: an error where it
cannot run). Calls under ``torch.jit.trace`` (and the ONNX exporter) and ``torch.export`` take the
Python path whatever the mode: a graph records the Python path's operations, and the kernel is opaque
to it. The kernel's backward has no graph of its own: a double backward (``create_graph=True``)
through it raises, naming ``RL_LSTM_KERNEL=0``.

``RL_LSTM_GEMM`` chooses the routine of the per-step recurrent products (``h W_hh^T`` forward, ``dh``
backward; ``rl_lstm/csrc/small_gemm.h``; ``dW_hh``, with 4H rows, stays on BLAS): ``auto`` (the default:
AVX-512, else AVX2 with FMA, else BLAS), ``avx512``, ``avx2`` or ``blas``. Asking for a routine the CPU
cannot run is a ValueError naming the ones it can (at the first kernel call, or :func:`gemm_path`);
:func:`gemm_path` says which one runs.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import sysconfig
import threading
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Protocol

import torch
from torch import Tensor

from rl_lstm.masks import MaskSpec

ENV = "RL_LSTM_KERNEL"
MODES = ("auto", "0", "1")
SOURCE = Path(__file__).parent / "csrc" / "lstm_chunk.cpp"
#: Files the source includes: torch's build cache watches the sources only, so their digest enters the flags.
HEADERS = tuple(
    SOURCE.parent / name
    for name in ("small_gemm.h", "small_gemm_body.inc", "gru_chunk.inc", "linear_scan.inc", "rmsprop.inc")
)
GEMM_ENV = "RL_LSTM_GEMM"
GEMM_MODES = ("auto", "avx512", "avx2", "blas")
DTYPES = (torch.float32, torch.float64)
#: The mask sites the kernel knows (``rl_lstm.masks.MaskSpec.site``), numbered as in the C++ source.
SITES = {"output": 1, "hidden": 2, "cell": 3, "candidate": 4, "zoneout": 5}


class KernelCell(Protocol):
    """What :func:`run` reads of a cell (``rl_lstm.lstm.LSTM``, ``rl_lstm.gru.GRU`` and their subclasses):
    nn.LSTM- or nn.GRU-shaped parameters, the state it carries, the dropout site and probability, and the
    layer norms."""

    state_names: tuple[str, ...]
    gates: int
    hidden_size: int
    dropout: float
    mask_spec: MaskSpec
    weight_ih: Tensor
    weight_hh: Tensor
    bias_ih: Tensor | None
    bias_hh: Tensor | None

    def kernel_norms(self) -> tuple[list[Tensor | None], float, float]: ...


_lock = threading.Lock()
_module: ModuleType | None = None
_error: str | None = None  # why the build failed, once it has
_warned: set[str] = set()


def mode() -> str:
    """``RL_LSTM_KERNEL``: ``auto`` (default), ``0`` or ``1``."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV}={value!r}: expected one of {', '.join(MODES)}")
    return value


def find_compiler() -> str | None:
    """The C++ compiler torch's build would call (``$CXX``, else ``c++``), or None if there is none."""
    return shutil.which(os.environ.get("CXX", "c++"))


def _cflags() -> list[str]:
    flags = ["-O3", "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        flags.append("-march=native")  # built on the machine it runs on, so its vector units are known
    headers = hashlib.sha1(b"".join(h.read_bytes() for h in HEADERS)).hexdigest()[:10]
    flags.append(f"-DRL_LSTM_HEADERS={headers}")
    return flags


def _torch_install() -> str:
    """Where the running torch is installed, and the Python headers it builds against: torch's build file
    names both folders, so two installations (two virtual environments) sharing one build folder would
    find it out of date and recompile it whenever the other had built last."""
    return "\0".join([str(Path(torch.__file__).resolve().parent), sysconfig.get_paths()["include"]])


def _name() -> str:
    """The extension's name: one build per source text, flags, CPU (``-march=native`` code is
    CPU-specific), torch version and torch installation (:func:`_torch_install`). The checkout's path is
    not part of it, so clones of one source share a build; two checkouts with different sources get
    different names, so neither rebuilds the other's; two virtual environments get a build each."""
    cpu = platform.processor() + platform.machine()
    try:
        cpu += next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    key = hashlib.sha1(SOURCE.read_bytes())
    key.update("\0".join([cpu, " ".join(_cflags()), torch.__version__, _torch_install()]).encode())
    return f"rl_lstm_kernel_{key.hexdigest()[:10]}"


def _staged_source(build_dir: Path) -> Path:
    """The source and the files it includes, copied into the build folder, whose copy the build compiles:
    the build's command line then names no checkout, so a clone finds the build up to date instead of
    recompiling it for its own path."""
    for path in (SOURCE, *HEADERS):
        staged = build_dir / path.name
        text = path.read_bytes()
        if not staged.exists() or staged.read_bytes() != text:
            partial = staged.with_name(f"{staged.name}.{os.getpid()}.tmp")
            partial.write_bytes(text)
            os.replace(partial, staged)
    return build_dir / SOURCE.name


def _build() -> ModuleType:
    from torch.utils import cpp_extension

    name = _name()
    build_dir = Path(cpp_extension._get_build_directory(name, verbose=False))
    library = build_dir / f"{name}.so"

    def built_at() -> int | None:
        return library.stat().st_mtime_ns if library.exists() else None

    before = built_at()
    if before is None:
        print(f"rl_lstm: compiling the recurrent kernel ({SOURCE.name}; once, then cached)...", file=sys.stderr)
    start = time.perf_counter()
    source = _staged_source(build_dir)
    module = cpp_extension.load(name=name, sources=[str(source)], extra_cflags=_cflags(), verbose=False)
    # Said only when this call (or another process it waited for) wrote the library: a load from the cache
    # can take seconds on a busy machine, and is no compile.
    if built_at() != before:
        print(f"rl_lstm: recurrent kernel compiled in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return module


def _first_error(message: str) -> str:
    """The line of a build failure that says what went wrong (the compiler's first error, if any)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()] or ["(no message)"]
    errors = [line for line in lines if "error:" in line.lower()] or lines
    return errors[0][:300]


def load() -> ModuleType | None:
    """The compiled extension, built at the first call; None if it cannot be built (see :func:`build_error`)."""
    global _module, _error
    if _module is not None or _error is not None:
        return _module
    with _lock:
        if _module is None and _error is None:
            if find_compiler() is None:
                _error = f"no C++ compiler found (looked for {os.environ.get('CXX', 'c++')!r}; set CXX)"
            else:
                try:
                    _module = _build()
                except Exception as exc:  # noqa: BLE001 (any build failure means: the Python path)
                    _error = f"the build failed ({type(exc).__name__}: {_first_error(str(exc))})"
    return _module


def build_error() -> str | None:
    """Why the extension could not be built, once :func:`load` has tried; else None."""
    return _error


def unavailable(x: Tensor) -> str | None:
    """Why the kernel cannot run a call on ``x``, or None when it can (building it if need be)."""
    if x.device.type != "cpu":
        return f"tensors on {x.device} (the kernel runs on the CPU; other devices keep the Python path)"
    if x.dtype not in DTYPES:
        return f"dtype {x.dtype} (the kernel takes float32 and float64)"
    return None if load() is not None else _error


def use(x: Tensor) -> bool:
    """Whether a cell's call on ``x`` runs the kernel, as ``RL_LSTM_KERNEL`` says. In ``auto`` mode
    the first call that cannot run it warns once per reason; in mode ``1`` such a call raises."""
    chosen = mode()
    if chosen == "0" or torch.jit.is_tracing() or torch.compiler.is_exporting():
        return False  # a graph records the Python path's operations; the kernel is opaque to it
    reason = unavailable(x)
    if reason is None:
        return True
    if chosen == "1":
        raise RuntimeError(f"{ENV}=1 but the compiled recurrent kernel cannot run: {reason}")
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"rl_lstm: the Python path runs instead of the compiled kernel: {reason}", stacklevel=3)
    return False


def run(
    cell: KernelCell, x: Tensor, h: Tensor, c: Tensor, starts: Tensor | None, masks: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """A cell's ``_run`` on the kernel: ``x`` (T, B, I), ``h``/``c`` (B, H; c None for the GRU family),
    ``starts`` bool (T, B) or None, ``masks`` (T, B, mask_width) or None -> output (T, B, H), h, c."""
    site = cell.mask_spec.site
    lstm = cell.state_names == ("h", "c")
    if masks is None and site == "zoneout" and cell.dropout > 0.0:
        # The expectation: each unit p of the way back to its previous value (a stride-0 mask).
        width = 2 * cell.hidden_size if lstm else cell.hidden_size
        masks = x.new_full((1, 1, width), cell.dropout).expand(x.shape[0], x.shape[1], -1)
    code = 0 if masks is None else SITES[site]
    norms, eps_pre, eps_c = cell.kernel_norms()
    module = _module if _module is not None else load()
    if not lstm and cell.gates == 1:  # the tanh RNN
        out, h = module.rnn_chunk(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, masks, starts, code)
        return out, h, None
    if not lstm:
        out, h = module.gru_chunk(
            x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, *norms, masks, starts, code, eps_pre
        )
        return out, h, None
    out, h, c = module.lstm_chunk(
        x, h, c, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, *norms, masks, starts, code, eps_pre, eps_c
    )
    return out, h, c


def gemm_mode() -> str:
    """``RL_LSTM_GEMM``: ``auto`` (default), ``avx512``, ``avx2`` or ``blas``."""
    value = os.environ.get(GEMM_ENV, "auto").strip().lower() or "auto"
    if value not in GEMM_MODES:
        raise ValueError(f"{GEMM_ENV}={value!r}: expected one of {', '.join(GEMM_MODES)}")
    return value


def gemm_path() -> str:
    """The routine the kernel's recurrent products run on now: ``avx512``, ``avx2`` or ``blas`` (what
    ``RL_LSTM_GEMM`` asks for; a ValueError where this CPU cannot run it), or ``none`` when the kernel is not
    built."""
    gemm_mode()
    module = _module if _module is not None else load()
    return "none" if module is None else module.gemm_path()
