"""A training run: its configuration, the hardware probe and plan, the pipeline of stages
(prepare, plan, train, finish), resumable checkpoints, transfer strategies, distributed set-up,
progress, run directories and plots."""
