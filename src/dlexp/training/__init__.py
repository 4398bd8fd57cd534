"""Training one fold: the Trainer, the training step, optimizers and schedulers, checkpoints, the Runtime,
interruption and multi-process (torchrun) support.

- ``trainer``: the epoch loop as named steps; ``step``: the training step and one pass over a loader;
- ``stopping``: early stopping; ``optim``, ``schedulers``: the registries and builders;
- ``checkpointer``: when ``last.pt`` and ``best.pt`` are written; ``runtime``: device, precision,
  compile, threads, seeding; ``interrupt``: SIGINT/SIGTERM; ``distributed``: ranks and collectives.

May import tasks, data, models, runs and config; never the command line, results or the course.
``interrupt`` and ``distributed`` import no torch at load, so the command line can use them early.
"""
