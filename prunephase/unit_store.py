"""A view of a sweep's artifact store for one unit of adaptive work.

Adaptive seeds (`adaptive_seeds`), the adaptive search (`adaptive_cells`) and both at once
(`adaptive_cell_seeds`) run the ordinary stages on a unit: a config narrowed to some
temperatures, densities or an added dense seed, whose artifacts live under keys of their own in
the sweep's workdir. A `UnitStore` is an `artifacts.Store` of that narrowed config that keeps
the sweep's branch (the narrowed config would name another), its data facts and its model object
(compiled programs are cached by it).
"""

from prunephase import artifacts


class UnitStore(artifacts.Store):
  """The artifacts of one unit, in the base store's branch; subclasses name the unit's keys.

  Attributes:
    base: the sweep's store.
  """

  def __init__(self, base: artifacts.Store, unit_config):
    super().__init__(base.path, unit_config, None, base.device)
    self.base = base
    # The branch of the sweep, not of the unit's config (prune.densities names the branch).
    self._branch = base._branch  # pylint: disable=protected-access

  @property
  def facts(self) -> artifacts.DataFacts:
    return self.base.facts

  @property
  def model(self):
    return self.base.model  # One model object: compiled programs are cached by it.
