"""``torch.nn.LSTM`` behind the cells' interface: the reference in tests and benchmarks."""

from __future__ import annotations

from torch import Tensor, nn

from rl_lstm.base import RecurrentLayer
from rl_lstm.segments import run_pieces, run_segments


class TorchLSTM(RecurrentLayer):
    """A thin adapter over ``torch.nn.LSTM`` (one layer) with the cells' ``forward``.

    ``TorchLSTM(input_size, hidden_size, bias=True, dropout=0.0, dropout_method='pytorch')``:
    dropout acts on the output only. Episode starts split the sequence into stretches that
    ``nn.LSTM`` runs in one call each. Its weights live in :attr:`lstm` and are also readable as
    ``weight_ih``, ``weight_hh``, ``bias_ih`` and ``bias_hh``.
    """

    dropout_methods = ("pytorch",)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        dropout: float = 0.0,
        dropout_method: str = "pytorch",
    ) -> None:
        super().__init__(input_size, hidden_size, bias, dropout=dropout, dropout_method=dropout_method)
        self.lstm = nn.LSTM(self.input_size, self.hidden_size, bias=self.bias)

    weight_ih = property(lambda self: self.lstm.weight_ih_l0)
    weight_hh = property(lambda self: self.lstm.weight_hh_l0)
    bias_ih = property(lambda self: self.lstm.bias_ih_l0 if self.bias else None)
    bias_hh = property(lambda self: self.lstm.bias_hh_l0 if self.bias else None)

    def _lstm(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out, (h, c) = self.lstm(x, (h.unsqueeze(0), c.unsqueeze(0)))
        return out, h[0], c[0]

    def _run(self, x: Tensor, h: Tensor, c: Tensor, starts: Tensor | None, masks: Tensor | None, need_state=True):
        if need_state or starts is None:
            out, h, c = run_segments(self._lstm, x, h, c, starts)
        else:
            out, h, c = run_pieces(self._lstm, x, h, c, starts), None, None
        return (out if masks is None else out * masks), h, c
