"""Chrono initialisation of a memory's gate biases (Tallec & Ollivier, "Can recurrent neural networks warp
time?", ICLR 2018), for dependencies that reach far.

An LSTM's forget gate with bias b keeps a fraction sigmoid(b) of its cell per step: at PyTorch's initial
biases (about 0) a cue fades as 0.5^t and its gradient with it, so that across 100 steps neither survives.
Chrono initialisation draws the forget bias as ``log(U(1, t_max - 1))`` and the input bias as its negative,
so that the units' characteristic memory times spread over 1 .. ``t_max`` steps from the start. For the
GRU family (gate order r, z, n; ``h' = (1 - z) n + z h``) the update gate's bias plays the forget gate's part.
"""

from __future__ import annotations

import torch as th

from agents.memory import MemoryStack

#: Gate blocks of a layer's biases (4H: LSTM, 3H: GRU) -> (block of the keep gate, block of the write gate or None).
_KEEP_GATES = {4: (1, 0), 3: (1, None)}


def chrono_init_(memory: MemoryStack, t_max: int) -> None:
    """Set every layer's gate biases in place: keep gate ``log(U(1, t_max - 1))`` (on ``bias_hh``; ``bias_ih``'s
    share zeroed), LSTM input gate its negative. Draws from torch's global generator (seeded by the algorithm).

    Raises ValueError naming the value when ``t_max < 2`` or a layer has no keep gate or no biases.
    """
    if isinstance(t_max, bool) or not isinstance(t_max, int) or t_max < 2:
        raise ValueError(f"chrono_init={t_max!r}: expected an int >= 2 (the longest dependency, in steps), or None")
    for layer in memory.layers:
        bias_ih = getattr(layer, "bias_ih", None)
        gates = None if bias_ih is None else bias_ih.numel() // layer.hidden_size
        if gates not in _KEEP_GATES:
            raise ValueError(
                f"chrono_init={t_max}: the {type(layer).__name__} layer has no forget or update gate with biases; "
                "it applies to the LSTM and GRU families with bias=True"
            )
        keep, write = _KEEP_GATES[gates]
        hidden = layer.hidden_size
        with th.no_grad():
            bias = th.log(th.empty(hidden).uniform_(1.0, max(t_max - 1, 1 + 1e-6)))
            block = slice(keep * hidden, (keep + 1) * hidden)
            layer.bias_ih[block] = 0.0
            layer.bias_hh[block] = bias
            if write is not None:
                block = slice(write * hidden, (write + 1) * hidden)
                layer.bias_ih[block] = 0.0
                layer.bias_hh[block] = -bias

