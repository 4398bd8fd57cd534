"""dlexp's Hydra plugins: the Optuna search sweeper (``hparams_search=optuna``) and the slots launcher
(``hydra/launcher=slots``). Hydra discovers them in the ``hydra_plugins`` namespace; the work is in
``dlexp.search``."""
