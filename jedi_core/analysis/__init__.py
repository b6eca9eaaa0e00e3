"""Looking at runs and models: metrics and reports, figures and videos, diagnostics, benchmarks,
Colab helpers.

Nothing in the training path imports this package: it is the top layer, free to use matplotlib.
"""
