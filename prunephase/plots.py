"""Figures: the phase diagram (by default the four panels of the paper's Figure 2) and LMC
curves."""

from collections.abc import Sequence
import os
import textwrap

import matplotlib

matplotlib.use('Agg')  # Files only; no display needed.
from matplotlib import patheffects  # pylint: disable=g-import-not-at-top,wrong-import-position
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from prunephase import knobs  # pylint: disable=g-import-not-at-top
from prunephase import metrics  # pylint: disable=g-import-not-at-top
from prunephase import regimes as regimes_lib  # pylint: disable=g-import-not-at-top


def boundary_edges(labels: np.ndarray) -> dict[str, list[tuple[float, float, float, float]]]:
  """Cell edges where the regime changes, in imshow coordinates (cell centres at integers).

  Returns {'I/II': [...], 'IIA/IIB': [...]} of segments (x0, y0, x1, y1).
  """
  edges = {'I/II': [], 'IIA/IIB': []}

  def kind(a, b):
    if regimes_lib.NO_LABEL in (a, b) or a == b:
      return None
    return 'I/II' if 'I' in (a, b) else 'IIA/IIB'

  rows, cols = labels.shape
  for t in range(rows):
    for d in range(cols):
      if d + 1 < cols and (k := kind(labels[t, d], labels[t, d + 1])):
        edges[k].append((d + 0.5, t - 0.5, d + 0.5, t + 0.5))
      if t + 1 < rows and (k := kind(labels[t, d], labels[t + 1, d])):
        edges[k].append((d - 0.5, t + 0.5, d + 0.5, t + 0.5))
  return edges


def knob_label(knob: str) -> str:
  """The temperature axis label of a knob (its `knobs.Knob` entry's `label`; the name itself for a
  knob this process does not know)."""
  return knobs.knob(knob).label if knob in knobs.names() else knob


# The LMC colour scale (and the Bezier-curve MC's, same units) is symmetric around 0 and spans
# at least +-this: the smallest LMC drop the default transition rule counts as a transition
# (regimes.DEFAULTS['min_drop']), the barrier scale the findings compare against. A grid whose
# LMC stays within seed noise of 0 (|LMC| ~ 0.01) then looks pale, as it should, instead of
# stretching the whole colour range over noise.
MIN_BARRIER_RANGE = regimes_lib.DEFAULTS['min_drop']
# In-cell text, in points: legible at the saved resolution (the figure grows with the grid so
# that a cell holds a number at this size).
VALUE_FONTSIZE = 9
LABEL_FONTSIZE = 10
# Inches per density column and per temperature row of a panel; see VALUE_FONTSIZE.
CELL_WIDTH, CELL_HEIGHT = 0.55, 0.45
DPI = 110


def _outlined(color: str) -> dict:
  """Text keyword arguments: `color` with a thin outline in the opposite shade, so the text
  reads on mid-tone cells too (where neither black nor white alone contrasts well)."""
  outline = 'black' if color == 'white' else 'white'
  return {'color': color,
          'path_effects': [patheffects.withStroke(linewidth=1.5, foreground=outline)]}


def _on(image, value: float) -> str:
  """'white' on a dark cell of `image`, else 'black' (from the cell colour's luminance; a NaN
  cell is left blank, i.e. light)."""
  if not np.isfinite(value):
    return 'black'
  red, green, blue, _ = image.cmap(image.norm(value))
  return 'white' if 0.299 * red + 0.587 * green + 0.114 * blue < 0.5 else 'black'


def _panel(ax, values, title, cmap, temperatures, densities, knob, colorbar_label,
           fmt='{:.3f}', vmin=None, vmax=None, value_offset=0.0):
  """One heat map with its numbers in the cells (up to 200 cells) and a labelled colour bar;
  returns the image."""
  image = ax.imshow(values, cmap=cmap, aspect='auto', vmin=vmin, vmax=vmax)
  ax.set_xticks(range(len(densities)), [f'{100 * d:g}' for d in densities])
  ax.set_yticks(range(len(temperatures)), [f'{t:g}' for t in temperatures])
  ax.set_xlabel('Load: density (%)')
  ax.set_ylabel(f'Temp.: {knob_label(knob)} (hot at top)')
  ax.set_title(title)
  for (t, d), value in np.ndenumerate(values):
    if not np.isfinite(value) or values.size > 200:
      continue
    ax.text(d, t + value_offset, fmt.format(value), ha='center', va='center',
            fontsize=VALUE_FONTSIZE, **_outlined(_on(image, value)))
  colorbar = plt.colorbar(image, ax=ax, fraction=0.046)
  colorbar.set_label(colorbar_label)
  return image


def _boundaries(ax, labels):
  edges = boundary_edges(labels)
  for x0, y0, x1, y1 in edges['I/II']:
    ax.plot([x0, x1], [y0, y1], color='red', lw=2.5, solid_capstyle='butt')
  for x0, y0, x1, y1 in edges['IIA/IIB']:  # Outlined: LMC's near-0 cells are white too.
    ax.plot([x0, x1], [y0, y1], color='white', lw=2, ls=(0, (3, 2)),
            path_effects=[patheffects.withStroke(linewidth=3.5, foreground='black')])


# The panels (title, colour map, colour bar label) are the metric entries' columns
# (`metrics.panels()`); 'RdBu' panels are centred on 0.
DEFAULT_PANELS = ('test_error', 'normalized_test_error', 'lmc', 'cka_softmax')


def _column_normalized(test_error: np.ndarray) -> np.ndarray:
  """Test error minus its density column's minimum; NaN in a column without test errors."""
  measured = np.isfinite(test_error).any(axis=0)
  column_min = np.full(test_error.shape[1], np.nan)
  column_min[measured] = np.nanmin(test_error[:, measured], axis=0)
  return test_error - column_min


def phase_diagram(path: str | os.PathLike, *, knob: str, temperatures: Sequence[float],
                  densities: Sequence[float], means: dict[str, np.ndarray],
                  labels: np.ndarray, confidence: np.ndarray, min_confidence: float,
                  rule_text: str, panels: Sequence[str] = DEFAULT_PANELS,
                  inferred: np.ndarray | None = None) -> None:
  """Writes the phase diagram of one sweep: by default the four panels of the paper's Figure 2.

  Args:
    path: PNG file.
    knob: the temperature hyperparameter.
    temperatures: row values, hottest first (top).
    densities: column values (fractions).
    means: (T, D) cell means by results.csv column ('test_error', 'lmc', ...).
    labels: (T, D) regime labels; drawn as text on the first panel, with the I/II boundary
      solid red and the II-A/II-B boundary dashed white on every panel.
    confidence: (T, D) label confidence (prunephase/confidence.py); cells below `min_confidence` are hatched.
    rule_text: the labelling rule, printed under the figure.
    panels: panel names of the metric entries (`metrics.panels()`), left to right ('normalized_test_error' is the test error
      minus its column's minimum).
    inferred: optional (T, D) booleans: labels inferred from measured neighbours (an adaptive
      search; the cell is not measured): a grey dotted box, the label in grey italics.
  """
  values = {**means, 'normalized_test_error': _column_normalized(means['test_error'])}
  width = len(panels) * (2.5 + max(3.5, CELL_WIDTH * len(densities)))  # Axis labels, colour bar.
  fig, axes = plt.subplots(1, len(panels), figsize=(width, CELL_HEIGHT * len(temperatures) + 3.5))
  axes = np.atleast_1d(axes)
  for i, (ax, name) in enumerate(zip(axes, panels)):
    panel = metrics.panels()[name]
    title, cmap, grid = panel.title, panel.cmap, values[name]
    # The first panel carries the regime labels under its numbers (see below).
    style = {'colorbar_label': panel.colorbar, 'value_offset': -0.17 if i == 0 else 0.0}
    if cmap == 'RdBu':
      largest = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 0.0
      bound = max(MIN_BARRIER_RANGE, largest)
      _panel(ax, grid, title, cmap, temperatures, densities, knob, vmin=-bound, vmax=bound,
             **style)
    else:
      _panel(ax, grid, title, cmap, temperatures, densities, knob,
             fmt='{:.3g}' if cmap == 'magma_r' else '{:.3f}', **style)
  for ax in axes:
    _boundaries(ax, labels)
    for (t, d), conf in np.ndenumerate(confidence):
      if np.isfinite(conf) and conf < min_confidence:
        ax.add_patch(plt.Rectangle((d - 0.5, t - 0.5), 1, 1, fill=False, hatch='///',
                                   edgecolor='grey', lw=0))
    for t, d in zip(*np.nonzero(inferred if inferred is not None else np.zeros((0, 0)))):
      ax.add_patch(plt.Rectangle((d - 0.45, t - 0.45), 0.9, 0.9, fill=False, edgecolor='grey',
                                 lw=1.5, ls=':'))
  first, first_grid = axes[0].images[0], values[panels[0]]
  for (t, d), label in np.ndenumerate(labels):
    if inferred is not None and inferred[t, d]:  # Not measured: no colour, no red patch.
      style = {'color': 'grey', 'fontstyle': 'italic'}
    elif label == 'I':  # Red as its boundary: white on a red patch reads on any cell colour.
      style = {'color': 'white', 'bbox': {'boxstyle': 'round,pad=0.2', 'facecolor': 'red',
                                          'edgecolor': 'none'}}
    else:
      style = _outlined(_on(first, first_grid[t, d]))
    axes[0].text(d, t + 0.25, label or 'n/a', ha='center', va='center',
                 fontsize=LABEL_FONTSIZE, fontweight='bold', **style)
  caption = textwrap.fill(
      f'Regime rule (prunephase\'s, not the paper\'s): {rule_text}. Solid red: I/II; dashed '
      f'white: II-A/II-B; hatched: confidence < {min_confidence:g}'
      + ('; grey dotted box, grey italic label: inferred from measured neighbours, not '
         'measured.' if inferred is not None and inferred.any() else '.'),
      width=int(10 * width))  # Characters of the 9-point caption across the figure.
  fig.text(0.01, 0.01, caption, fontsize=9, va='bottom')
  fig.tight_layout(rect=(0, 0.03 + 0.025 * caption.count('\n'), 1, 1))
  fig.savefig(path, dpi=DPI)
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
