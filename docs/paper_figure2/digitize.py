"""Reads cell values off the paper's Figure-2 heat maps (the reference repository's PNGs).

Provenance of `metrics.csv` in this folder. The reference repository
(YefanZhou/ThreeRegimePruning, `visualization/earlystop_{test_error,linear_mc,
cka_similairty}.png`) ships the three heat maps of Figure 2 but not the numbers behind them.
This script samples the median colour at the centre of each of the 16 x 9 cells and inverts
the colour bar: the nearest colour-bar pixel (RGB distance) gives a row, and the colour bar's
tick marks map rows to values linearly. Values are therefore approximate (about 1 % of each
panel's colour range), good enough to score a regime rule, not to quote as the paper's numbers.

  python docs/paper_figure2/digitize.py DIR_WITH_PNGS > docs/paper_figure2/metrics.csv
"""

import pathlib
import sys

import numpy as np
from PIL import Image

from prunephase.config import paper

EPOCHS = paper.EPOCHS  # Rows, top (hottest) to bottom.
DENSITIES = paper.DENSITIES  # Columns.
# Pixel geometry of the 1889/1893 x 1540 PNGs: heat-map interior and colour-bar interior.
MAP_ROWS, MAP_COLS = (206, 1288), (296, 1577)
BAR_ROWS, BAR_COLS = (206, 1288), (1632, 1681)
# (file stem, column name, ((tick row, tick value), (tick row, tick value))).
PANELS = (
    ('earlystop_test_error', 'test_error', ((372, 0.16), (1241, 0.08))),
    ('earlystop_linear_mc', 'lmc', ((207, 0.0), (1161, -0.6))),
    ('earlystop_cka_similairty', 'cka_softmax', ((338, 0.98), (1114, 0.90))),
)


def read_panel(path: pathlib.Path, ticks) -> np.ndarray:
  """(16, 9) values of one heat map."""
  image = np.asarray(Image.open(path).convert('RGB')).astype(float)
  bar = np.median(image[BAR_ROWS[0]:BAR_ROWS[1], BAR_COLS[0]:BAR_COLS[1]], axis=1)  # (H, 3)
  (row_a, value_a), (row_b, value_b) = ticks
  bar_values = value_a + (np.arange(BAR_ROWS[0], BAR_ROWS[1]) - row_a) * (
      (value_b - value_a) / (row_b - row_a))
  height = (MAP_ROWS[1] - MAP_ROWS[0]) / len(EPOCHS)
  width = (MAP_COLS[1] - MAP_COLS[0]) / len(DENSITIES)
  values = np.zeros((len(EPOCHS), len(DENSITIES)))
  for i in range(len(EPOCHS)):
    for j in range(len(DENSITIES)):
      r = int(MAP_ROWS[0] + (i + 0.5) * height)
      c = int(MAP_COLS[0] + (j + 0.5) * width)
      colour = np.median(image[r - 15:r + 15, c - 30:c + 30].reshape(-1, 3), axis=0)
      values[i, j] = bar_values[np.argmin(((bar - colour) ** 2).sum(-1))]
  return values


def main(folder: str) -> None:
  panels = {name: read_panel(pathlib.Path(folder) / f'{stem}.png', ticks)
            for stem, name, ticks in PANELS}
  print('temperature,density,' + ','.join(panels))
  for i, epochs in enumerate(EPOCHS):
    for j, density in enumerate(DENSITIES):
      print(f'{epochs},{density:g},' + ','.join(f'{panels[n][i, j]:.4f}' for n in panels))


if __name__ == '__main__':
  main(sys.argv[1])
