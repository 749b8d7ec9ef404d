"""The speed benchmark's report: target summary, lstms.pth's table beside ours, ratio matrices,
full tables and the plot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from rl_lstm.bench.speed_spec import (
    MODES,
    REFERENCES,
    SEED_SIZES,
    SEED_SPEED,
    SEED_STEPS,
    TARGET_BATCHES,
    TARGET_KERNEL,
    TARGET_SEQ,
    References,
    Settings,
    families,
    family,
    is_adapter,
    references,
)
from rl_lstm.tooling import describe_machine, md_table, save_figure


def fmt_us(v: float) -> str:
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def fmt_stat(st: dict[str, float], fmt: Callable[[float], str]) -> str:
    return f"{fmt(st['median'])} ({fmt(st['min'])}-{fmt(st['max'])})"


def fmt_ratio(v: float) -> str:
    return f"{v:.2f}"


def fmt_targets(targets: list[dict]) -> str:
    return "; ".join(f"{'pass' if t['pass'] else 'FAIL'} {t['target']}" for t in targets) or "-"


def by_family(cells: list[str]) -> list[tuple[References, list[str]]]:
    """The cells grouped by the references they are measured against, in registry order."""
    return [(refs, [n for n in cells if references(n) == refs]) for refs in families(cells)]


def names(cells: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in cells) or "none"


def missed_targets(step: list[dict], seq: list[dict]) -> list[str]:
    missed = []
    for row in step:
        for name, cell in row["cells"].items():
            for t in cell["targets"]:
                if not t["pass"]:
                    missed.append(
                        f"{name} {row['mode']} H={row['hidden']} B={row['batch']}: {t['target']} (got {t['value']:.2f})"
                    )
    for row in seq:
        for name, cell in row["cells"].items():
            for t in cell["targets"]:
                if not t["pass"]:
                    missed.append(f"{name} sequence ({row['setting']}): {t['target']} (got {t['value']:.2f})")
    return missed


def target_summary(step: list[dict], seq: list[dict], cells: list[str]) -> str:
    """Per cell, target and mode: how many measurements pass, and the worst one."""
    groups: dict[tuple[str, str, str], list[tuple[dict, str]]] = {}
    for row in step:
        for name, cell in row["cells"].items():
            for t in cell["targets"]:
                where = f"H{row['hidden']} B{row['batch']}"
                groups.setdefault((name, t["target"], row["mode"]), []).append((t, where))
    for row in seq:
        for name, cell in row["cells"].items():
            for t in cell["targets"]:
                groups.setdefault((name, t["target"], "sequence"), []).append((t, row["setting"]))
    rows = []
    order = [*MODES, "sequence"]
    for (name, target, mode), items in sorted(
        groups.items(), key=lambda kv: (cells.index(kv[0][0]), kv[0][1], order.index(kv[0][2]))
    ):
        # "faster than" targets are speedups (higher is better); "<=" targets are ratios (lower is better)
        worst = (
            min(items, key=lambda it: it[0]["value"])
            if "faster" in target
            else max(items, key=lambda it: it[0]["value"])
        )
        passed = sum(t["pass"] for t, _ in items)
        rows.append([name, target, mode, f"{passed}/{len(items)}", f"{worst[0]['value']:.2f} ({worst[1]})"])
    return md_table(["cell", "target", "mode", "passed", "worst (where)"], rows)


def seed_figures(name: str, hidden: int) -> tuple[float, float] | None:
    """lstms.pth's (nn.LSTM, cell) seconds for 1000 steps at this size, None where it published none."""
    if name not in SEED_SPEED or hidden not in SEED_SIZES:
        return None
    k = SEED_SIZES.index(hidden)
    return SEED_SPEED[name][0][k], SEED_SPEED[name][1][k]


def seed_table(step: list[dict], cells: list[str]) -> str:
    """lstms.pth's table (eval mode, batch 1), seconds per sequence of 1000 steps, lstms.pth beside ours:
    the LSTM family only, measured against nn.LSTM as lstms.pth's cells were."""
    nn_key = REFERENCES[nn.LSTM].nn_key
    rows = []
    by_size = {r["hidden"]: r for r in step if r["mode"] == "eval" and r["batch"] == 1}
    for name in cells:
        for hidden, r in sorted(by_size.items()):
            seed = seed_figures(name, hidden)
            nn_s = r["references"][nn_key]["us_per_step"]["median"] * SEED_STEPS / 1e6
            cell = r["cells"][name]
            cell_s = cell["us_per_step"]["median"] * SEED_STEPS / 1e6
            seed_cols = [f"{seed[0]:.3f}", f"{seed[1]:.3f}", f"{seed[0] / seed[1]:.3f}"] if seed else ["-"] * 3
            rows.append(
                [name, hidden, *seed_cols, f"{nn_s:.3f}", f"{cell_s:.3f}", fmt_stat(cell["speedup_nn_step"], fmt_ratio)]
            )
    headers = [
        "cell",
        "size",
        "seed nn.LSTM (s)",
        "seed cell (s)",
        "seed speedup",
        "nn.LSTM (s)",
        "cell (s)",
        "speedup (min-max)",
    ]
    return md_table(headers, rows)


def ratio_matrix(step: list[dict], mode: str, key: str, cells: list[str]) -> str:
    """Rows: cells; columns: (batch, size); entries: the median ratio ``key``."""
    cols = sorted((r["batch"], r["hidden"]) for r in step if r["mode"] == mode)
    by = {(r["batch"], r["hidden"]): r for r in step if r["mode"] == mode}
    headers = ["cell", *(f"B{b} H{h}" for b, h in cols)]
    rows = [[name, *(f"{by[c]['cells'][name][key]['median']:.2f}" for c in cols)] for name in cells]
    return md_table(headers, rows)


def step_table(step: list[dict], mode: str, refs: References, cells: list[str]) -> str:
    """Every figure of one family's cells in one mode, its two references first at each setting."""
    labels = refs.labels(sequence=False)
    rows = []
    for r in (r for r in step if r["mode"] == mode):
        for key, label in labels.items():
            st = r["references"][key]["us_per_step"]
            rows.append([label, r["hidden"], r["batch"], fmt_stat(st, fmt_us), "", "", ""])
        for name in cells:
            c = r["cells"][name]
            rows.append(
                [
                    name,
                    r["hidden"],
                    r["batch"],
                    fmt_stat(c["us_per_step"], fmt_us),
                    fmt_stat(c["ratio_step_kernel"], fmt_ratio),
                    fmt_stat(c["speedup_nn_step"], fmt_ratio),
                    fmt_targets(c["targets"]),
                ]
            )
    headers = [
        "cell",
        "H",
        "B",
        "us/step (min-max)",
        f"cell / {refs.kernel_name}",
        f"{refs.module_name} / cell (speedup)",
        "targets",
    ]
    return md_table(headers, rows)


def sequence_table(row: dict, refs: References, cells: list[str]) -> str:
    """One sequence-mode setting for one family's cells, its two references first."""
    mib = 2**20
    rows = []
    for key, label in refs.labels(sequence=True).items():
        r = row["references"][key]
        peak = f"{r['cuda_peak_bytes'] / mib:.1f}" if "cuda_peak_bytes" in r else "-"
        rows.append([label, fmt_stat(r["ms_per_call"], fmt_us), "", "", f"{r['saved_bytes'] / mib:.2f}", peak, ""])
    for name in cells:
        c = row["cells"][name]
        peak = f"{c['cuda_peak_bytes'] / mib:.1f}" if "cuda_peak_bytes" in c else "-"
        rows.append(
            [
                name,
                fmt_stat(c["ms_per_call"], fmt_us),
                fmt_stat(c["ratio_nn_fused"], fmt_ratio),
                fmt_stat(c["ratio_kernel_loop"], fmt_ratio),
                f"{c['saved_bytes'] / mib:.2f}",
                peak,
                fmt_targets(c["targets"]),
            ]
        )
    headers = [
        "cell",
        "ms per fwd+bwd (min-max)",
        f"cell / {refs.module_name} fused",
        f"cell / {refs.kernel_name} loop",
        "saved for backward (MiB)",
        "CUDA peak (MiB)",
        "targets",
    ]
    return md_table(headers, rows)


def targets_text(cells: list[str]) -> str:
    """The targets in words, naming the cells each applies to."""
    by = {fam: [n for n in cells if family(n) == fam] for fam in TARGET_KERNEL}
    kernels = ", ".join(refs.kernel_name for refs in families(cells))
    modules = ", ".join(refs.module_name for refs in families(cells))
    adapters = [n for n in cells if is_adapter(n)]
    return (
        f"Targets (reported, not asserted): in training modes at batch {' and '.join(map(str, TARGET_BATCHES))}, "
        f"a cell over its family's step kernel ({kernels}) <= {TARGET_KERNEL['plain']} for the plain cells "
        f"({names(by['plain'])}), <= {TARGET_KERNEL['dropout']} for the dropout cells ({names(by['dropout'])}), "
        f"<= {TARGET_KERNEL['layer-norm']} for the LayerNorm cells ({names(by['layer-norm'])}); every cell but the "
        f"adapters over the torch modules ({names(adapters)}) faster than its torch module ({modules}) called with "
        f"seq_len 1; sequence mode: the plain cells <= {TARGET_SEQ} x their torch module's fused call."
    )


def markdown(data: dict) -> str:
    s = Settings(**data["settings"])
    step, seq = data["step"], data["sequence"]
    groups = by_family(s.cells)
    parts = [
        "# Speed of the cells",
        "",
        f"Machine: {describe_machine(data['machine'])}.",
        "",
        "Each cell is measured against the references of the torch module whose math and parameters it shares "
        f"({', '.join(f'{refs.module_name} and {refs.kernel_name}' for refs, _ in groups)}), on the same weights.",
        "",
        f"Step mode: one call per step (seq_len 1), output fed back as the next input (input size = hidden size), "
        f"dropout {s.dropout}. Each (mode, size, batch) is warmed up, then timed in {s.repeats} rounds, every timer "
        "once per round in a shuffled order; figures are medians with min-max over rounds; ratios are taken within "
        "a round. Modes:",
        "",
        *(f"- `{m}`: {MODES[m].doc}" for m in s.modes),
        "",
        targets_text(s.cells),
        "",
    ]
    parts += [
        "## Targets: not judged (a --quick smoke run at toy sizes)"
        if s.quick
        else f"## Targets: {len(data['missed_targets'])} missed (the list is in speed.json)",
        "",
        target_summary(step, seq, s.cells),
        "",
    ]
    lstm_cells = next((cells for refs, cells in groups if refs.module is nn.LSTM), [])
    if lstm_cells and any(r["mode"] == "eval" and r["batch"] == 1 for r in step):
        parts += [
            "## lstms.pth's table: inference, batch 1, seconds per sequence of 1000 steps",
            "",
            "Ours are eval mode, no grad, and scaled from the per-step median (fewer steps are timed at large sizes). "
            "lstms.pth's script timed modules left in training mode with autograd on; its figures come from "
            "another machine and an old PyTorch, so compare speedups, not seconds. lstms.pth had LSTMs only.",
            "",
            seed_table(step, lstm_cells),
            "",
        ]
    for mode in s.modes:
        parts += [f"## Step mode `{mode}`: ratios to the references (median)", ""]
        for refs, cells in groups:
            parts += [
                f"### cell / {refs.kernel_name}",
                "",
                ratio_matrix(step, mode, "ratio_step_kernel", cells),
                "",
                f"### speedup over {refs.module_name} with seq_len 1 (> 1 is faster)",
                "",
                ratio_matrix(step, mode, "speedup_nn_step", cells),
                "",
            ]
    for mode in s.modes:
        parts += [f"## Step mode `{mode}`: all figures", "", f"{MODES[mode].doc}.", ""]
        for refs, cells in groups:
            parts += [
                f"### against {refs.module_name} and {refs.kernel_name}",
                "",
                step_table(step, mode, refs, cells),
                "",
            ]
    for row in seq:
        parts += [
            f"## Sequence mode, {row['setting']}: T={row['seq_len']}, B={row['batch']}, H={row['hidden']}, "
            "training mode, forward + backward of out.sum()",
            "",
            f"Episode starts: each row and step with probability {row['start_prob']:.3f} "
            f"({row['steps_with_a_start']} of {row['seq_len']} steps hold one); the references run without resets. "
            f"{row['calls']} call(s) per timing, {row['repeats']} rounds. Saved for backward: distinct "
            "storages autograd keeps for backward, without parameters and input.",
            "",
        ]
        for refs, cells in groups:
            parts += [
                f"### against {refs.module_name} fused and a {refs.kernel_name} loop",
                "",
                sequence_table(row, refs, cells),
                "",
            ]
    return "\n".join(parts)


def plot(data: dict, path: Path) -> bool:
    """Training mode (``train``, else the first mode run): per-step time against hidden size at the
    smallest batch, and each cell over its family's step kernel at each batch that has a target,
    with the target lines."""
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    s = Settings(**data["settings"])
    mode = "train" if "train" in s.modes else s.modes[0]
    batches = [b for b in s.batches if b in TARGET_BATCHES] or s.batches[:1]

    def rows_at(batch: int) -> list[dict]:
        rows = (r for r in data["step"] if r["mode"] == mode and r["batch"] == batch)
        return sorted(rows, key=lambda r: r["hidden"])

    if len(s.sizes) < 2:
        return False
    fig, axes = plt.subplots(1, 1 + len(batches), figsize=(6 * (1 + len(batches)), 7.5))
    rows = rows_at(batches[0])
    sizes = [r["hidden"] for r in rows]
    groups = by_family(s.cells)
    # Line style: dotted for the LayerNorm cells; marker and reference grey: the torch module's family.
    styles = {name: ":" if family(name) == "layer-norm" else "-" for name in s.cells}
    markers = {refs: m for refs, m in zip(REFERENCES.values(), "os^", strict=True)}
    greys = {refs: g for refs, g in zip(REFERENCES.values(), ("black", "dimgray", "darkgray"), strict=True)}
    ax = axes[0]
    for refs, _ in groups:
        for key, style in ((refs.nn_key, "--"), (refs.kernel_key, "-")):
            times = [r["references"][key]["us_per_step"]["median"] for r in rows]
            ax.plot(sizes, times, ls=style, color=greys[refs], lw=2, label=refs.labels(sequence=False)[key])
    for refs, cells in groups:
        for name in cells:
            times = [r["cells"][name]["us_per_step"]["median"] for r in rows]
            ax.plot(sizes, times, ls=styles[name], marker=markers[refs], ms=4)
    ax.set(yscale="log", ylabel="microseconds per step (median)", title=f"Per-step time, batch {batches[0]}")
    for ax, batch in zip(axes[1:], batches, strict=True):
        rows = rows_at(batch)
        for refs, cells in groups:
            for name in cells:
                ratios = [r["cells"][name]["ratio_step_kernel"]["median"] for r in rows]
                ax.plot(sizes, ratios, ls=styles[name], marker=markers[refs], ms=4, label=name)
        for bound in sorted(set(TARGET_KERNEL.values())):
            ax.axhline(bound, color="grey", lw=0.8, ls="--")
        ax.set(
            yscale="log",
            ylabel="cell / its step kernel (median)",
            title=f"Against each family's step kernel, batch {batch}",
        )
        lo, hi = ax.get_ylim()
        ax.set_yticks([v for v in (0.8, 0.9, 1, 1.1, 1.3, 1.5, 2, 3, 5, 10, 20) if lo <= v <= hi])
    for ax in axes:
        ax.set(xscale="log", xlabel="hidden size")
        ax.set_xticks(sizes, [str(v) for v in sizes])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # log axes label minor ticks otherwise
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    # Below the axes, where they cover no line (inside, with a dozen cells, they hid the data).
    axes[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    axes[-1].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4)
    fig.suptitle(
        f"Step mode `{mode}`: {MODES[mode].doc}; dropout {s.dropout}; {data['machine']['torch_threads']} thread(s)"
    )
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    return True
