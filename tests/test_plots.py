"""Plot geometry (prunephase.plots): where the regime boundaries are drawn."""

import numpy as np

from prunephase import plots


def test_boundary_edges():
  labels = np.array([['I', 'II-A'],
                     ['II-B', 'II-A'],
                     ['', 'II-B']], dtype=object)
  edges = plots.boundary_edges(labels)
  # I|II-A vertical between columns 0 and 1 in row 0; I over II-B horizontal in column 0;
  # II-B|II-A vertical in row 1; II-A over II-B horizontal in column 1; nothing next to ''.
  assert edges == {
      'I/II': [(0.5, -0.5, 0.5, 0.5), (-0.5, 0.5, 0.5, 0.5)],
      'IIA/IIB': [(0.5, 0.5, 0.5, 1.5), (0.5, 1.5, 1.5, 1.5)]}


def test_boundary_edges_uniform_grid_has_none():
  labels = np.full((2, 3), 'II-B', dtype=object)
  assert plots.boundary_edges(labels) == {'I/II': [], 'IIA/IIB': []}
