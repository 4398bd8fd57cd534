"""Reading run dirs back: the sweep report (``report``), its tables and console view (``tables``), and
every plot (``plots``), drawn from the files a run wrote, so any of them can be redrawn later.

May import runs (file names), config and errors; nothing here imports torch.
"""
