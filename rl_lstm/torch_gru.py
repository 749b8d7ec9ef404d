"""``torch.nn.GRU`` behind the cells' interface: the reference for the GRU family."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from rl_lstm.base import RecurrentLayer
from rl_lstm.segments import run_pieces, run_segments


class TorchGRU(RecurrentLayer):
    """A thin adapter over ``torch.nn.GRU`` (one layer) with the cells' ``forward``; the state is
    ``h`` alone.

    ``TorchGRU(input_size, hidden_size, bias=True, dropout=0.0, dropout_method='pytorch')``:
    dropout acts on the output only. Episode starts split the sequence into stretches that
    ``nn.GRU`` runs in one call each. Its weights live in :attr:`gru` and are also readable as
    ``weight_ih``, ``weight_hh``, ``bias_ih`` and ``bias_hh``.
    """

    state_names: ClassVar[tuple[str, ...]] = ("h",)
    dropout_methods = ("pytorch",)
    torch_module = nn.GRU

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        dropout: float = 0.0,
        dropout_method: str = "pytorch",
    ) -> None:
        super().__init__(input_size, hidden_size, bias, dropout=dropout, dropout_method=dropout_method)
        self.gru = nn.GRU(self.input_size, self.hidden_size, bias=self.bias)

    weight_ih = property(lambda self: self.gru.weight_ih_l0)
    weight_hh = property(lambda self: self.gru.weight_hh_l0)
    bias_ih = property(lambda self: self.gru.bias_ih_l0 if self.bias else None)
    bias_hh = property(lambda self: self.gru.bias_hh_l0 if self.bias else None)

    def _gru(self, x: Tensor, h: Tensor, c: None) -> tuple[Tensor, Tensor, None]:
        out, h = self.gru(x, h.unsqueeze(0))
        return out, h[0], None

    def _run(self, x: Tensor, h: Tensor, c: None, starts: Tensor | None, masks: Tensor | None, need_state=True):
        if need_state or starts is None:
            out, h, c = run_segments(self._gru, x, h, c, starts)
        else:
            out, h, c = run_pieces(self._gru, x, h, c, starts), None, None
        return (out if masks is None else out * masks), h, c
