"""Metrics, looked up by name: what the measure stage measures and where its columns go.

A metric entry states, in one place, everything prunephase needs to measure it and to show it:
its config fields (under `config.measure`) with their defaults, what it is computed on (seed
pairs of retrained members, or single members) and what it needs, its compute function, its
columns (results.csv, cells.csv) and the phase-diagram panels of those columns. The measure
stage, the results and cells tables, the report's panels and figures, config validation,
branch identity and `analysis.load_run` build their lists from the entries.

  metrics.register_metric(
      'disagreement', on='pairs', needs=('test_logits',), compute=disagreement,
      fields={'disagreement_examples': 0},
      columns=[metrics.Column('disagreement', title='Prediction disagreement',
                              cmap='viridis', colorbar='fraction of test inputs')])

Compute contract (metrics with `compute`, the only kind a user registers; needs
('test_logits',)): prunephase computes every retrained member's eval-mode logits on the test
set and calls, under `jax.jit` and vmapped over pairs (or members) and sharded over the mesh:

  on='pairs':   compute(logits_a, logits_b, labels, settings) -> {column: scalar}
  on='members': compute(logits, labels, settings) -> {column: scalar}

with logits (n_test, classes) float32, labels (n_test,) int32 and `settings` the dict of the
entry's fields' values (plain Python values). Write it with jax.numpy. A pair column is one
value per seed pair; a member column gives results.csv `<name>_a`, `<name>_b` and their mean
`<name>`. Cells (cells.csv, panels) hold the mean over the seed pairs of each dense seed, then
over the dense seeds.

The built-ins (errors, lmc, cka, hessian, bezier_curve) are measured by the measure stage's own
code (`compute` None: `stages/measure.py`, `stages/measure_hessian_curve.py`); their entries declare
their fields, columns and panels. A metric with a `switch` (a boolean field, default False) is
measured only where it is True, and its columns are written only where measured. Nothing here
imports outside the standard library (the registry, validation and `--help` import no JAX).
"""

import dataclasses
import importlib
from typing import Any

ON = ('pairs', 'members')
NEEDS = ('test_logits', 'train_logits', 'states', 'masks', 'data', 'history')
PER = ('pair', 'member', 'dense')
PLACES = ('main', 'detail', 'none')
AGGREGATES = ('mean',)
KEYS = ('knob', 'temperature', 'density', 'dense_seed', 'seed_a', 'seed_b')
RESERVED = (*KEYS, 'regime', 'regime_confidence', 'diverged', 'num_pairs', 'num_dense_seeds',
            'inferred', 'curve', 'bezier')


class MetricError(ValueError):
  """An unknown or twice-registered metric, a bad registration, or a compute function that
  returned other columns; the message is one line."""


def _error(message: str) -> Exception:
  return MetricError(message)


def resolve(target) -> Any:
  """A callable, or the attribute named by a 'module:attribute' string (imported now)."""
  if callable(target):
    return target
  module, _, attribute = target.partition(':')
  return getattr(importlib.import_module(module), attribute)


@dataclasses.dataclass(frozen=True)
class Column:
  """One column of a metric.

  Attributes:
    name: results.csv / cells.csv column (and panel name).
    per: 'pair' (one value per seed pair), 'member' (one per retrained member: results.csv has
      `<name>_a`, `<name>_b` and their mean `<name>`) or 'dense' (one per dense model).
    place: results.csv position: 'main' (before the regime label), 'detail' (after it), 'none'.
    cell: cells.csv has its cell value (`aggregate` over the seed pairs of each dense seed,
      then over the dense seeds).
    std: cells.csv also has `<name>_std`, its standard deviation over the dense seeds.
    aggregate: 'mean' (the only one).
    title: phase-diagram panel title; '' = no panel.
    cmap: matplotlib colour map; 'RdBu' is centred on 0 (barriers).
    colorbar: the colour bar's label (the metric and its unit).
  """

  name: str
  per: str = 'pair'
  place: str = 'main'
  cell: bool = True
  std: bool = False
  aggregate: str = 'mean'
  title: str = ''
  cmap: str = 'viridis'
  colorbar: str = ''


@dataclasses.dataclass(frozen=True)
class Metric:
  """A registered metric (see the module docstring).

  Attributes:
    name: the metric's name.
    on: 'pairs' (seed pairs of retrained members) or 'members'.
    needs: what it is computed from, some of `NEEDS`.
    columns: its `Column`s, in table order.
    fields: ((field, default), ...) of `config.measure`.
    switch: the boolean field that turns it on (default False), or None (always measured).
    compute: the compute function (a callable or 'module:attribute'), or None for a built-in
      measured by the measure stage's own code.
    check: `check(config)` (the whole config) raising ValueError with a one-line message where
      the metric cannot run, or None (validation makes it a ConfigError).
    speed_only: fields that change only speed or memory, never a value (branch identity).
    origin: where it was registered ('module:qualified.name' of `compute`, or the file).
  """

  name: str
  on: str
  needs: tuple[str, ...]
  columns: tuple[Column, ...]
  fields: tuple[tuple[str, Any], ...] = ()
  switch: str | None = None
  compute: Any = None
  check: Any = None
  speed_only: tuple[str, ...] = ()
  origin: str = dataclasses.field(default='', compare=False)

  def setting(self, measure, field: str) -> Any:
    """The value of one of its fields in a `config.measure` (its default where absent)."""
    default = dict(self.fields)[field]
    return measure.get(field, default) if measure is not None else default

  def settings(self, measure) -> dict[str, Any]:
    """{field: value} of all its fields in a `config.measure`."""
    return {field: self.setting(measure, field) for field, _ in self.fields}

  def enabled(self, measure) -> bool:
    """Whether a `config.measure` measures it."""
    return self.switch is None or bool(self.setting(measure, self.switch))

  def compute_fn(self):
    """The compute function (imports a 'module:attribute' target)."""
    return resolve(self.compute)


_METRICS: dict[str, Metric] = {}


def register_metric(name: str, *, on: str, columns, needs=('test_logits',), fields=None,
                    switch: str | None = None, compute: Any = None, check: Any = None,
                    speed_only=(), _builtin: bool = False) -> Metric:
  """Registers metric `name` (attributes: `Metric`); returns the entry.

  `fields`: {field: default} of `config.measure` (a dict, or (field, default) pairs); `switch`
  must be one of them. `compute` (a callable or 'module:attribute') is required of a metric that
  is not built in: `compute(logits_a, logits_b, labels, settings)` for on='pairs',
  `compute(logits, labels, settings)` for on='members' (module docstring).
  """
  if not isinstance(name, str) or not name.isidentifier():
    raise _error(f'a metric name must be an identifier, got {name!r}')
  if on not in ON:
    raise _error(f'metric {name!r}: on must be one of {", ".join(ON)}, got {on!r}')
  needs = (needs,) if isinstance(needs, str) else tuple(needs)
  if any(n not in NEEDS for n in needs):
    raise _error(f'metric {name!r}: needs must be some of {", ".join(NEEDS)}, got {needs}')
  fields = tuple((fields or {}).items() if isinstance(fields, dict) else fields or ())
  if any(not (isinstance(f, str) and f.isidentifier()) for f, _ in fields):
    raise _error(f'metric {name!r}: fields must be identifiers, got {[f for f, _ in fields]}')
  if switch is not None and switch not in dict(fields):
    raise _error(f'metric {name!r}: switch {switch!r} is not one of its fields')
  if not _builtin:
    if compute is None:
      raise _error(f'metric {name!r}: give its compute function')
    if needs != ('test_logits',):
      raise _error(f"metric {name!r}: a metric of one's own needs ('test_logits',), got {needs}")
  for hook, value in (('compute', compute), ('check', check)):
    if not (value is None or callable(value) or (isinstance(value, str) and ':' in value)):
      raise _error(f'metric {name!r}: {hook} must be a callable, got {value!r}')
  columns = tuple(columns)
  if not columns or not all(isinstance(c, Column) for c in columns):
    raise _error(f'metric {name!r}: columns must be a non-empty list of metrics.Column')
  for c in columns:
    if not c.name.isidentifier() or c.per not in PER or c.place not in PLACES or (
        c.aggregate not in AGGREGATES):
      raise _error(f'metric {name!r}: bad column {c}; per: {", ".join(PER)}; place: '
                   f'{", ".join(PLACES)}; aggregate: {", ".join(AGGREGATES)}')
  taken = {n: f'metric {m.name}' for m in _METRICS.values() if m.name != name
           for n in _all_names(m)}
  taken.update({n: 'results.csv' for n in RESERVED})
  clash = [n for c in columns for n in _names_of(c) if n in taken]
  if clash:
    raise _error(f'metric {name!r}: column {clash[0]!r} is already a column of {taken[clash[0]]}')
  origin = _origin(compute) if compute is not None else 'prunephase'
  old = _METRICS.get(name)
  if old is not None and old.origin != origin:
    raise _error(f'metric {name!r} is already registered (by {old.origin}); choose another name')
  entry = Metric(name, on, needs, columns, fields, switch, compute, check, tuple(speed_only),
                 origin=origin)
  _METRICS[name] = entry
  return entry


def _origin(target) -> str:
  if isinstance(target, str):
    return target
  return f'{getattr(target, "__module__", "?")}:{getattr(target, "__qualname__", id(target))}'


def _names_of(column: Column) -> list[str]:
  extra = [f'{column.name}_a', f'{column.name}_b'] if column.per == 'member' else []
  return [column.name, *extra] + ([f'{column.name}_std'] if column.std else [])


def _all_names(entry: Metric) -> list[str]:
  return [n for c in entry.columns for n in _names_of(c)]


def names() -> tuple[str, ...]:
  """Every registered metric, built-ins first."""
  return tuple(_METRICS)


def metric(name: str) -> Metric:
  """The entry of metric `name`; MetricError naming the choices if there is none."""
  if name not in _METRICS:
    raise _error(f'unknown metric {name!r}; choose one of {", ".join(_METRICS)}')
  return _METRICS[name]


def unregister(name: str) -> None:
  """Removes a user's metric (tests, notebooks); built-ins cannot be removed."""
  if metric(name).compute is None:
    raise _error(f'metric {name!r} is built in and cannot be unregistered')
  del _METRICS[name]


def entries(measure=None) -> tuple[Metric, ...]:
  """Every entry, or those a `config.measure` measures."""
  return tuple(m for m in _METRICS.values() if measure is None or m.enabled(measure))


def computed(measure) -> tuple[Metric, ...]:
  """The enabled metrics with a compute function (measured by `stages/measure_metrics.py`)."""
  return tuple(m for m in entries(measure) if m.compute is not None)


# ------------------------------------------------------------------ tables, panels, identity


def _results(switched: bool) -> list[str]:
  metrics = [m for m in _METRICS.values() if (m.switch is not None) == switched]
  main = [c.name for m in metrics for c in m.columns if c.place == 'main']
  detail = [n for m in metrics for c in m.columns if c.place != 'none' for n in (
      [f'{c.name}_a', f'{c.name}_b'] if c.per == 'member' else [])
            + ([c.name] if c.place == 'detail' else [])]
  return main, detail


def result_columns() -> list[str]:
  """results.csv's columns always written: the keys, the unswitched metrics' main columns, the
  label, their detail columns, 'diverged'."""
  main, detail = _results(False)
  return [*KEYS, *main, 'regime', 'regime_confidence', *detail, 'diverged']


def optional_result_columns() -> list[str]:
  """results.csv's columns written only where measured (the switched metrics')."""
  main, detail = _results(True)
  return main + detail


def member_columns() -> list[str]:
  """Columns with one value per member (results.csv has their pair mean)."""
  return [c.name for m in _METRICS.values() for c in m.columns if c.per == 'member']


def cell_fields() -> list[str]:
  """Every column aggregated into cells."""
  return [c.name for m in _METRICS.values() for c in m.columns if c.cell]


def std_fields() -> list[str]:
  """The cell fields whose seed std cells.csv holds."""
  return [c.name for m in _METRICS.values() for c in m.columns if c.cell and c.std]


def _cells(switched: bool) -> list[str]:
  out = []
  for place in ('main', 'detail', 'none'):
    for m in _METRICS.values():
      if (m.switch is not None) == switched:
        for c in m.columns:
          if c.cell and c.place == place:
            out += [c.name] + ([f'{c.name}_std'] if c.std else [])
  return out


def cell_columns() -> list[str]:
  """cells.csv's columns always written: keys, counts, the unswitched metrics' cells, label."""
  return ['knob', 'temperature', 'density', 'num_pairs', 'num_dense_seeds', *_cells(False),
          'regime', 'regime_confidence']


def optional_cell_fields() -> list[str]:
  """cells.csv's columns written only where a cell is measured (the switched metrics')."""
  return _cells(True)


def column_names() -> list[str]:
  """Every metric column name of results.csv and cells.csv (numbers)."""
  return [n for m in _METRICS.values() for n in _all_names(m)]


def panels() -> dict[str, Column]:
  """{panel name: its column (title, cmap, colorbar)}, in registration order."""
  return {c.name: c for m in _METRICS.values() for c in m.columns if c.title}


def panel_needs() -> dict[str, str]:
  """{panel: the switch field it needs} for the switched metrics' panels."""
  return {c.name: m.switch for m in _METRICS.values() if m.switch for c in m.columns if c.title}


def defaults() -> dict[str, Any]:
  """{field: default} of every metric's `config.measure` fields."""
  return {f: d for m in _METRICS.values() for f, d in m.fields}


def add_fields(measure) -> None:
  """Adds the registered metrics' fields missing from a `config.measure` ConfigDict, with
  their defaults (a config file calls it: `--config.measure.<field>=...` then works)."""
  for field, default in defaults().items():
    if field not in measure:
      measure[field] = default


def identity_rules() -> tuple[dict[str, Any], dict[str, tuple[str, Any]], tuple[str, ...]]:
  """(neutral, only_when, speed_only) of `config/identity.py` for the measure fields: a switch
  decides nothing when off; a switched metric's other fields decide only when it is on."""
  neutral, only_when, speed = {}, {}, []
  for m in _METRICS.values():
    speed += [f'measure.{f}' for f in m.speed_only]
    if m.switch is not None:
      neutral[f'measure.{m.switch}'] = False
      only_when.update({f'measure.{f}': (f'measure.{m.switch}', True)
                        for f, _ in m.fields if f != m.switch})
  return neutral, only_when, tuple(speed)


# ------------------------------------------------------------------ built-ins

_RED_BLUE = 'RdBu'
register_metric('errors', on='members', needs=('history', 'masks'), _builtin=True,
                fields={'test_error_epochs': 2},
                columns=[
                    Column('test_error', per='member', std=True, cmap='viridis_r',
                           title='Test error (regimes labelled)', colorbar='test error (fraction)'),
                    Column('normalized_test_error', place='none', cell=False, cmap='viridis_r',
                           title='Normalized test error (column minus its min)',
                           colorbar='test error above the column minimum (fraction)'),
                    Column('train_error', per='member', title='Train error', cmap='viridis_r',
                           colorbar='train error (fraction)'),
                    Column('pruned_test_error', place='detail', cmap='viridis_r',
                           title='Test error right after pruning',
                           colorbar='test error (fraction)'),
                    Column('dense_test_error', per='dense', place='detail'),
                    Column('actual_density', place='detail', cell=False)])
register_metric('lmc', on='pairs', needs=('states', 'data'), _builtin=True,
                fields={'lmc_points': 11, 'bn_batch_size': 64, 'lmc_test': True,
                        'point_batching': 'auto', 'pairs_per_call': 0},
                speed_only=('point_batching', 'pairs_per_call'),
                columns=[Column('lmc', std=True, cmap=_RED_BLUE,
                                title='LMC (train error; < 0 = barrier)',
                                colorbar='LMC (train error, fraction; < 0: barrier)')])
register_metric('cka', on='pairs', needs=('train_logits',), _builtin=True,
                fields={'cka_examples': 6464, 'cka_estimator': 'biased'},
                columns=[Column('cka_softmax', std=True, title='CKA of softmax outputs',
                                colorbar='CKA (0 to 1)'),
                         Column('cka_logits', title='CKA of logits', colorbar='CKA (0 to 1)')])
register_metric('hessian', on='members', needs=('states', 'masks', 'data'), _builtin=True,
                fields={'hessian': False, 'hessian_batches': 4, 'hessian_iters': 20,
                        'hessian_probes': 20}, switch='hessian',
                columns=[
                    Column('hessian_top_eigenvalue', per='member', cmap='magma_r',
                           title='Hessian top eigenvalue (retrained)',
                           colorbar='top eigenvalue of the train-loss Hessian'),
                    Column('hessian_trace', per='member', cmap='magma_r',
                           title='Hessian trace (retrained)',
                           colorbar='trace of the train-loss Hessian'),
                    Column('dense_hessian_top_eigenvalue', per='dense', cmap='magma_r',
                           title='Hessian top eigenvalue (dense)',
                           colorbar='top eigenvalue of the train-loss Hessian'),
                    Column('dense_hessian_trace', per='dense', place='detail', cell=False)])
register_metric('bezier_curve', on='pairs', needs=('states', 'masks', 'data'), _builtin=True,
                fields={'bezier_curve': False, 'curve_epochs': 4, 'curve_lr': 0.05,
                        'curve_points': 11}, switch='bezier_curve',
                columns=[Column('curve_mc', cmap=_RED_BLUE,
                                title='Bezier-curve MC (train error; < 0 = barrier)',
                                colorbar='Bezier-curve MC (train error, fraction; < 0: barrier)')])
