"""Figures: the phase diagram (by default the four panels of the paper's Figure 2) and LMC
curves."""

from collections.abc import Sequence
import os
import textwrap
import warnings

import matplotlib

matplotlib.use('Agg')  # Files only; no display needed.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from prunephase import regimes as regimes_lib  # pylint: disable=g-import-not-at-top

KNOB_LABELS = {'epochs': 'Training epochs', 'batch_size': 'Batch size', 'lr': 'Learning rate',
               'weight_decay': 'Weight decay', 'sam_rho': 'SAM rho'}


def _panel(ax, values, title, cmap, temperatures, densities, knob, fmt='{:.3f}', vmin=None,
           vmax=None):
  image = ax.imshow(values, cmap=cmap, aspect='auto', vmin=vmin, vmax=vmax)
  ax.set_xticks(range(len(densities)), [f'{100 * d:g}' for d in densities])
  ax.set_yticks(range(len(temperatures)), [f'{t:g}' for t in temperatures])
  ax.set_xlabel('Load: density (%)')
  ax.set_ylabel(f'Temp.: {KNOB_LABELS.get(knob, knob)} (hot at top)')
  ax.set_title(title)
  finite = values[np.isfinite(values)]
  low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
  for (t, d), value in np.ndenumerate(values):
    if not np.isfinite(value) or values.size > 200:
      continue
    if cmap == 'RdBu':  # Diverging around 0: saturated (dark) only far from 0.
      dark = abs(value) > 0.6 * max(abs(low), abs(high))
    else:  # viridis is dark at its low end, viridis_r at its high end.
      position = (value - low) / (high - low) if high > low else 0.5
      dark = position < 0.5 if cmap == 'viridis' else position > 0.5  # *_r: dark when high.
    ax.text(d, t, fmt.format(value), ha='center', va='center', fontsize=7,
            color='white' if dark else 'black')
  plt.colorbar(image, ax=ax, fraction=0.046)


def _boundaries(ax, labels):
  edges = regimes_lib.boundary_edges(labels)
  for x0, y0, x1, y1 in edges['I/II']:
    ax.plot([x0, x1], [y0, y1], color='red', lw=2.5, solid_capstyle='butt')
  for x0, y0, x1, y1 in edges['IIA/IIB']:
    ax.plot([x0, x1], [y0, y1], color='white', lw=2, ls=(0, (3, 2)))


# panel -> (title, colour map); 'RdBu' panels are centred on 0.
PANEL_STYLES = {
    'test_error': ('Test error (regimes labelled)', 'viridis_r'),
    'normalized_test_error': ('Normalized test error (column minus its min)', 'viridis_r'),
    'train_error': ('Train error', 'viridis_r'),
    'lmc': ('LMC (train error; < 0 = barrier)', 'RdBu'),
    'cka_softmax': ('CKA of softmax outputs', 'viridis'),
    'cka_logits': ('CKA of logits', 'viridis'),
    'pruned_test_error': ('Test error right after pruning', 'viridis_r'),
    'hessian_top_eigenvalue': ('Hessian top eigenvalue (retrained)', 'magma_r'),
    'hessian_trace': ('Hessian trace (retrained)', 'magma_r'),
    'dense_hessian_top_eigenvalue': ('Hessian top eigenvalue (dense)', 'magma_r'),
    'curve_mc': ('Bezier-curve MC (train error; < 0 = barrier)', 'RdBu'),
}
DEFAULT_PANELS = ('test_error', 'normalized_test_error', 'lmc', 'cka_softmax')


def phase_diagram(path: str | os.PathLike, *, knob: str, temperatures: Sequence[float],
                  densities: Sequence[float], means: dict[str, np.ndarray],
                  labels: np.ndarray, confidence: np.ndarray, min_confidence: float,
                  rule_text: str, panels: Sequence[str] = DEFAULT_PANELS) -> None:
  """Writes the phase diagram of one sweep: by default the four panels of the paper's Figure 2.

  Args:
    path: PNG file.
    knob: the temperature hyperparameter.
    temperatures: row values, hottest first (top).
    densities: column values (fractions).
    means: (T, D) cell means by results.csv column ('test_error', 'lmc', ...).
    labels: (T, D) regime labels; drawn as text on the first panel, with the I/II boundary
      solid red and the II-A/II-B boundary dashed white on every panel.
    confidence: (T, D) bootstrap confidence; cells below `min_confidence` are hatched.
    rule_text: the labelling rule, printed under the figure.
    panels: names from `PANEL_STYLES`, left to right ('normalized_test_error' is the test error
      minus its column's minimum).
  """
  with warnings.catch_warnings():  # A column without test errors stays NaN.
    warnings.simplefilter('ignore', RuntimeWarning)
    normalized = means['test_error'] - np.nanmin(means['test_error'], axis=0, keepdims=True)
  values = {**means, 'normalized_test_error': normalized}
  fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels),
                                                    0.45 * len(temperatures) + 3.5))
  axes = np.atleast_1d(axes)
  for ax, name in zip(axes, panels):
    title, cmap = PANEL_STYLES[name]
    grid = values[name]
    if cmap == 'RdBu':
      bound = max(0.01, float(np.nanmax(np.abs(grid)))) if np.isfinite(grid).any() else 1
      _panel(ax, grid, title, cmap, temperatures, densities, knob, vmin=-bound, vmax=bound)
    else:
      _panel(ax, grid, title, cmap, temperatures, densities, knob,
             fmt='{:.3g}' if cmap == 'magma_r' else '{:.3f}')
  for ax in axes:
    _boundaries(ax, labels)
    for (t, d), conf in np.ndenumerate(confidence):
      if np.isfinite(conf) and conf < min_confidence:
        ax.add_patch(plt.Rectangle((d - 0.5, t - 0.5), 1, 1, fill=False, hatch='///',
                                   edgecolor='grey', lw=0))
  for (t, d), label in np.ndenumerate(labels):
    axes[0].text(d, t + 0.33, label or 'n/a', ha='center', va='center', fontsize=7,
                 color='red' if label == 'I' else 'black', fontweight='bold')
  caption = textwrap.fill(
      f'Regime rule (prunephase\'s, not the paper\'s): {rule_text}. Solid red: I/II; dashed '
      f'white: II-A/II-B; hatched: confidence < {min_confidence:g}.', width=230)
  fig.text(0.01, 0.01, caption, fontsize=9, va='bottom')
  fig.tight_layout(rect=(0, 0.03 + 0.025 * caption.count('\n'), 1, 1))
  fig.savefig(path, dpi=110)
  plt.close(fig)


def lmc_curves(path: str | os.PathLike, curves: Sequence[dict], knob: str) -> None:
  """Train error along the straight path for a few cells.

  Args:
    path: PNG file.
    curves: dicts with 'temperature', 'density', 't' (K,), 'train_error' (K,), and
      optionally 'test_error' (K,) and 'lmc'.
  """
  fig, ax = plt.subplots(figsize=(7, 4.5))
  colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(curves), 1)))
  for color, curve in zip(colors, curves):
    ax.plot(curve['t'], curve['train_error'], '-o', ms=3, color=color,
            label=f'{knob}={curve["temperature"]:g}, d={100 * curve["density"]:g}%, '
                  f'LMC={curve.get("lmc", np.nan):+.3f}')
    if curve.get('test_error') is not None:
      ax.plot(curve['t'], curve['test_error'], ':', color=color)
  ax.set_xlabel('t  (w = (1-t) w_a + t w_b, BN recalibrated at each point)')
  ax.set_ylabel('error (solid: train, dotted: test)')
  ax.set_title('Linear interpolation between two retrained seeds')
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
