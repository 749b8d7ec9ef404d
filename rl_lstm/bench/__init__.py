"""Benchmarks of the cells, which need only torch: per-step and whole-sequence speed against
``nn.LSTM`` and ``torch.lstm_cell`` (:mod:`rl_lstm.bench.speed`), and the seed's capacity task
(:mod:`rl_lstm.bench.capacity`); plus the machine description, thread pinning, timing harness and
report helpers that the training benchmarks and the memory sweep reuse."""
