"""The paper's grids (docs/paper_figure2/), stated once for the configs, benchmarks and docs."""

# Load: the fraction of prunable (conv) weights kept (docs/definitions.md, Density), 9 columns.
DENSITIES = (0.05, 0.06, 0.07, 0.08, 0.10, 0.14, 0.20, 0.40, 0.80)
# Temperature of Figure 2: checkpoints (epochs) of one 160-epoch dense run, 16 rows.
EPOCHS = tuple(range(10, 161, 10))
