"""Benchmarks of the cells, which need only torch: per-step and whole-sequence speed against
``nn.LSTM`` and ``torch.lstm_cell`` (:mod:`rl_lstm.bench.speed`), and lstms.pth's capacity task
(:mod:`rl_lstm.bench.capacity`), the compiled kernel and the linear recurrences, on one timing harness
(:mod:`rl_lstm.bench.timing`). Argument types, the machine description, thread pinning and result files
come from :mod:`rl_lstm.tooling`, which the training harness and the memory sweep share."""
