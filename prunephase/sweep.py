"""The three-regime sweep as resumable stages over a workdir.

  train    dense family (one program per dense group; epoch checkpoints = the epoch family)
  prune    masks for every (temperature, dense seed, density), one call per dense checkpoint
  retrain  masked population (dense seeds x densities x retrain seeds) per temperature
  measure  test error, LMC curves and CKA for every retrain-seed pair
  report   results.csv, cells.csv, regimes, figures, findings, summary

Every stage reads only what earlier stages wrote, skips finished artifacts, and writes its own
atomically, so a killed run resumes where it stopped and gives the same numbers.

Workdir layout (temperature keys such as `epochs=8`):
  dense/<group>/epochs/<epoch>/      orbax: dense population state at saved epochs
  dense/<group>/resume/<epoch>/      optional mid-run resume point
  masks/<temperature>/0/             orbax: masks (dense seed, density, ...), pre-retrain errors
  retrain/<temperature>/epochs/<E>/  orbax: retrained population + per-epoch history
  measure/<temperature>.json         per-pair LMC curves and CKA
"""

from collections.abc import Sequence
import dataclasses
import functools
import pathlib
import time
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from prunephase import checkpoints
from prunephase import cka as cka_lib
from prunephase import data as data_lib
from prunephase import dispatch
from prunephase import grid
from prunephase import landscape
from prunephase import models
from prunephase import optim
from prunephase import pruning
from prunephase import train as train_lib
from prunephase import workdir as workdir_lib

STAGES = ('train', 'prune', 'retrain', 'measure', 'report')
HISTORY_KEYS = workdir_lib.METRIC_KEYS


class SweepError(RuntimeError):
  """A stage cannot run (missing earlier artifact, unreadable checkpoint); one-line message."""


@dataclasses.dataclass
class Sweep:
  """One sweep: its config, workdir, dataset and model, loaded lazily.

  Attributes:
    config: the (validated) ConfigDict.
    path: the workdir.
    timings: seconds spent per stage in this process.
    device: where checkpoints are restored (None = the default device; CPU for analysis).
  """

  config: Any
  path: pathlib.Path
  timings: dict = dataclasses.field(default_factory=dict)
  device: Any = None  # Where restored arrays go; None = the default device.
  _dataset: Any = None

  @property
  def dataset(self) -> data_lib.Dataset:
    if self._dataset is None:
      self._dataset = data_lib.load_dataset(self.config.dataset)
      grid.validate_against_data(self.config, self._dataset.num_train)
    return self._dataset

  @functools.cached_property
  def model(self):
    dtype = jnp.bfloat16 if self.config.model.mixed_precision else None
    return models.make_model(self.config.model, self.dataset.num_classes, dtype)

  @property
  def knob(self) -> str:
    return self.config.temperature.knob

  @property
  def temperatures(self) -> list[float]:
    """Hottest first."""
    return grid.hot_to_cold(self.knob, self.config.temperature.grid)

  @property
  def densities(self) -> list[float]:
    return [float(d) for d in self.config.prune.densities]

  @property
  def dense_seeds(self) -> list[int]:
    return list(self.config.dense.seeds)

  @property
  def retrain_seeds(self) -> list[int]:
    return list(self.config.retrain.seeds)

  def key(self, temperature: float) -> str:
    return grid.temperature_key(self.knob, temperature)

  @functools.cached_property
  def mesh(self) -> jax.sharding.Mesh | None:
    """The ('members', 'data') mesh from `config.mesh`, or None on a single device."""
    mesh_config = self.config.get('mesh')
    if jax.device_count() == 1 or mesh_config is None:
      return None
    try:
      return train_lib.make_mesh(int(mesh_config.members), int(mesh_config.data))
    except ValueError as error:
      raise grid.ConfigError(str(error)) from error

  @property
  def is_primary(self) -> bool:
    """Whether this process writes tables, figures, JSON and logs (process 0 of a run)."""
    return jax.process_index() == 0

  @functools.cached_property
  def metrics_log(self) -> workdir_lib.MetricsLog:
    return workdir_lib.MetricsLog(self.path / 'metrics.jsonl',
                                  bool(self.config.get('tensorboard', False)))

  def prunable(self, params) -> Any:
    return models.prunable_tree(params, self.config.model.prune_head)


# ----------------------------------------------------------------------------- helpers


def sync(name: str) -> None:
  """Waits for every process of a multi-host run (no-op with one process).

  Every process runs every stage (orbax saves and restores are collective, and the sharded
  training steps span processes); only process 0 writes files. Stages and measure iterations
  start with a barrier so that all processes see the same finished artifacts and take the same
  skip decisions.
  """
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(name)


def _state_template(model, input_shape, num_members: int) -> train_lib.MemberState:
  return jax.eval_shape(lambda: train_lib.init_population(
      model, input_shape, list(range(num_members)), list(range(num_members))))


def _restore_states(directory, step, template, device=None
                    ) -> tuple[train_lib.MemberState, dict]:
  try:
    tree = checkpoints.restore(directory, step, device=device or jax.local_devices()[0])
  except checkpoints.CheckpointError as error:
    raise SweepError(str(error)) from error
  states = flax.serialization.from_state_dict(template, tree['state'])
  return states, tree.get('history', {})


def _save_states(directory, step, states, history=None, max_to_keep=None):
  tree = {'state': flax.serialization.to_state_dict(states)}
  if history is not None:
    tree['history'] = history
  checkpoints.save(directory, step, tree, max_to_keep)


def _train_spec(section, num_train: int, total_steps: int | None = None,
                batch_size: int | None = None, use_sam: bool = False,
                decays: bool = True) -> tuple[train_lib.TrainSpec, int]:
  """TrainSpec of a dense or retrain section (batch size overridable), and the total steps."""
  batch_size = int(batch_size or section.batch_size)
  spe = grid.steps_per_epoch(num_train, batch_size)
  total = total_steps or section.epochs * spe
  boundaries = optim.decay_boundaries(total, spe, tuple(section.lr_decay_epochs),
                                      tuple(section.lr_decay_fractions)) if decays else ()
  return train_lib.TrainSpec(batch_size=batch_size, steps_per_epoch=spe,
                             lr_boundaries=boundaries, lr_decay=float(section.lr_decay),
                             momentum=float(section.momentum), use_sam=use_sam,
                             augmentation=section.augmentation), total


@functools.lru_cache(maxsize=16)
def _program(model, spec: train_lib.TrainSpec, masked: bool, mesh, steps_per_call: int | None
             ) -> train_lib.PopulationProgram:
  """One population program per shape, shared by every temperature (compiled once, not once
  per temperature: PreResNet-20 programs take tens of seconds to compile on a CPU)."""
  return train_lib.PopulationProgram(model, spec, masked, mesh, steps_per_call)


def _train_run(sweep: Sweep, *, stage: str, directory: pathlib.Path, spec, total_steps: int,
               states, hparams, masks, save_epochs: Sequence[int], resume_every: int,
               member_info: list[dict], label: str,
               progress: workdir_lib.Progress) -> tuple[train_lib.MemberState, dict]:
  """Trains a population to `total_steps`, saving `save_epochs` and resume points.

  Returns the final states and the per-epoch history {key: (M, epochs)}.
  """
  full_epochs, remainder = divmod(total_steps, spec.steps_per_epoch)
  num_epochs = full_epochs + (1 if remainder else 0)
  num_members = len(member_info)
  unpad = lambda tree: jax.tree.map(lambda a: a[:num_members], tree)
  history = {k: np.full((num_members, num_epochs), np.nan, np.float32) for k in HISTORY_KEYS}
  start = 0
  saved_epochs = checkpoints.steps(directory / 'epochs')
  done = saved_epochs + checkpoints.steps(directory / 'resume')
  if done:
    start = max(done)
    source = 'epochs' if start in saved_epochs else 'resume'
    states, saved = _restore_states(directory / source, start, states)
    for k in HISTORY_KEYS:
      if k in saved:
        history[k][:, :start] = np.asarray(saved[k])[:, :start]
    progress.skip(len(member_info) * min(start * spec.steps_per_epoch, total_steps),
                  f'{label}: resuming after epoch {start}')

  def on_epoch_end(epoch, states, metrics):
    metrics = {k: v[:num_members] for k, v in metrics.items()}  # Drop padding members.
    rows = []
    for k in HISTORY_KEYS:
      history[k][:, epoch - 1] = metrics[k]
    for m, info in enumerate(member_info):
      rows.append({'stage': stage, **info, 'epoch': epoch,
                   **{k: float(metrics[k][m]) for k in HISTORY_KEYS}})
    if sweep.is_primary:
      sweep.metrics_log.write(rows)
    if epoch in save_epochs or epoch == num_epochs:
      _save_states(directory / 'epochs', epoch, unpad(states), history)
    elif resume_every and epoch % resume_every == 0:
      _save_states(directory / 'resume', epoch, unpad(states), history, max_to_keep=1)
    steps = min(epoch * spec.steps_per_epoch, total_steps) - min(
        (epoch - 1) * spec.steps_per_epoch, total_steps)
    progress.advance(num_members * steps, f'{label} epoch {epoch}/{num_epochs} test error '
                     f'{np.nanmean(metrics["test_error"]):.3f}')

  dataset, mesh, masked = sweep.dataset, sweep.mesh, masks is not None
  steps_per_call = dispatch.resolve_steps_per_call(
      (sweep.config.get('train') or {}).get('steps_per_call', 'auto'), sweep.model,
      dataset.input_shape)
  program = _program(sweep.model, spec, masked, mesh, steps_per_call)
  if mesh is not None:
    multiple = mesh.shape[train_lib.MEMBERS]
    (states, hparams, masks), _ = train_lib.pad_members((states, hparams, masks), multiple)
    if -num_members % multiple:
      print(f'[{stage}] {label}: {num_members} members padded to '
            f'{num_members + (-num_members % multiple)} for the {multiple}-way member axis',
            flush=True)
    states, hparams, masks = program.place((states, hparams, masks))
    dataset = jax.device_put(train_lib.host_copy(dataset), jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec()))
  states = train_lib.run_epochs(program, states, hparams, masks, dataset, min(start, full_epochs),
                                full_epochs, on_epoch_end)
  if remainder and start < num_epochs:
    partial = dataclasses.replace(spec, steps_per_epoch=remainder)
    program = _program(sweep.model, partial, masked, mesh, steps_per_call)
    states = train_lib.run_epochs(program, states, hparams, masks, dataset, full_epochs,
                                  num_epochs, on_epoch_end)
  return unpad(states), history


# ----------------------------------------------------------------------------- train


def _dense_hparams(config, group: grid.DenseGroup) -> train_lib.Hparams:
  knob = config.temperature.knob
  values = {'lr': config.dense.lr, 'weight_decay': config.dense.weight_decay,
            'sam_rho': config.dense.sam_rho}
  columns = {}
  for name, default in values.items():
    per_member = [t if knob == name else default for t in group.temperatures]
    columns[name] = jnp.asarray(per_member, jnp.float32)
  return train_lib.Hparams(**columns)


def stage_train(sweep: Sweep) -> None:
  """Trains the dense family; resumes from the newest saved epoch of each group."""
  config = sweep.config
  groups = grid.dense_groups(config, sweep.dataset.num_train)
  plans = []
  for group in groups:
    spec, total = _train_spec(config.dense, sweep.dataset.num_train, group.total_steps,
                              group.batch_size, use_sam=config.dense.optimizer == 'sam')
    plans.append((group, spec, total))
  progress = workdir_lib.Progress(
      'train', sum(len(group.seeds) * total for group, _, total in plans))
  for group, spec, total in plans:
    directory = sweep.path / 'dense' / group.name
    num_epochs = grid.epochs_of(total, spec.steps_per_epoch)
    saved = checkpoints.steps(directory / 'epochs')
    if all(e in saved for e in group.save_epochs) and num_epochs in saved:
      progress.skip(len(group.seeds) * total, f'{group.name} done earlier')
      continue
    states = train_lib.init_population(sweep.model, sweep.dataset.input_shape, group.seeds,
                                       group.seeds, config.dense.momentum)
    info = [{'group': group.name, 'temperature': t, 'dense_seed': s}
            for t, s in zip(group.temperatures, group.seeds)]
    _train_run(sweep, stage='train', directory=directory, spec=spec, total_steps=total,
               states=states, hparams=_dense_hparams(config, group), masks=None,
               save_epochs=group.save_epochs, resume_every=config.dense.resume_every,
               member_info=info, label=group.name, progress=progress)


def dense_checkpoint(sweep: Sweep, temperature: float) -> dict[str, Any]:
  """The dense models of one temperature, one per dense seed (leading axis S, seed order).

  Returns {'params', 'batch_stats'} with leading axis len(dense.seeds).
  """
  config = sweep.config
  for group in grid.dense_groups(config, sweep.dataset.num_train):
    if sweep.knob == 'epochs':
      step, members = int(temperature), list(range(len(group.seeds)))
    elif temperature in group.temperatures:
      step = max(group.save_epochs)
      members = [m for m, t in enumerate(group.temperatures) if t == temperature]
    else:
      continue
    directory = sweep.path / 'dense' / group.name / 'epochs'
    if step not in checkpoints.steps(directory):
      raise SweepError(f'missing dense checkpoint {directory}/{step}: run the train stage first')
    template = _state_template(sweep.model, sweep.dataset.input_shape, len(group.seeds))
    states, _ = _restore_states(directory, step, template, sweep.device)
    index = jnp.asarray(members)
    return {'params': jax.tree.map(lambda a: a[index], states.params),
            'batch_stats': jax.tree.map(lambda a: a[index], states.batch_stats)}
  raise SweepError(f'no dense group holds temperature {temperature}')


# ----------------------------------------------------------------------------- prune


def stage_prune(sweep: Sweep) -> None:
  """One-shot masks for every (temperature, dense seed, density), with pre-retrain errors."""
  config = sweep.config
  progress = workdir_lib.Progress('prune', len(sweep.temperatures))
  evaluate = jax.jit(jax.vmap(
      lambda p, s, ds: train_lib.evaluate(sweep.model, p, s, ds, 'test'), in_axes=(0, 0, None)))
  for temperature in sweep.temperatures:
    directory = sweep.path / 'masks' / sweep.key(temperature)
    if checkpoints.steps(directory):
      progress.skip(1, f'{sweep.key(temperature)} done earlier')
      continue
    dense = dense_checkpoint(sweep, temperature)
    per_seed = []
    for s in range(len(sweep.dense_seeds)):
      params = jax.tree.map(lambda a: a[s], dense['params'])
      per_seed.append(pruning.make_masks(
          params, sweep.prunable(params), sweep.densities, config.prune.method,
          key=jax.random.PRNGKey(config.prune.seed + 1000 * s)))
    masks = train_lib.stack_members(per_seed)  # Leaves (S, D, ...).
    num_s, num_d = len(sweep.dense_seeds), len(sweep.densities)
    flat_masks = _flat_members(masks)  # (S*D, ...)
    repeat = lambda a: jnp.repeat(a, num_d, axis=0)
    pruned_params = pruning.apply_mask(jax.tree.map(repeat, dense['params']), flat_masks)
    pruned = evaluate(pruned_params, jax.tree.map(repeat, dense['batch_stats']), sweep.dataset)
    dense_eval = evaluate(dense['params'], dense['batch_stats'], sweep.dataset)
    actual = np.array([[pruning.density(pruning.mask_select(
        jax.tree.map(lambda a, s=s: a[s], masks), d))
        for d in range(num_d)] for s in range(num_s)])
    checkpoints.save(directory, 0, {
        'masks': pruning.flatten_mask(masks),
        'dense_test_error': np.asarray(dense_eval['error']),
        'pruned_test_error': np.asarray(pruned['error']).reshape(num_s, num_d),
        'density': actual})
    progress.advance(1, f'{sweep.key(temperature)} masks {num_s}x{num_d}', force=True)


def _flat_members(masks):
  """Merges the leading (S, D) axes of mask leaves into one axis S*D."""
  return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), masks)


def load_masks(sweep: Sweep, temperature: float, params_template) -> dict[str, Any]:
  """The prune stage's artifact: masks with leading (S, D) axes and the pre-retrain errors."""
  directory = sweep.path / 'masks' / sweep.key(temperature)
  try:
    tree = checkpoints.restore(directory, device=sweep.device or jax.local_devices()[0])
  except checkpoints.CheckpointError as error:
    raise SweepError(f'{error}: run the prune stage first') from error
  tree['masks'] = pruning.unflatten_mask(tree['masks'], sweep.prunable(params_template))
  return tree


# ----------------------------------------------------------------------------- retrain


def retrain_members(sweep: Sweep) -> list[dict[str, Any]]:
  """Member order of a retrain population: dense seed, then density, then retrain seed."""
  return [{'dense_seed': s, 'density': d, 'retrain_seed': r}
          for s in sweep.dense_seeds for d in sweep.densities for r in sweep.retrain_seeds]


def _retrain_setup(sweep: Sweep):
  config = sweep.config.retrain
  finetune = config.mode == 'finetune'
  spec, total = _train_spec(config, sweep.dataset.num_train, decays=not finetune)
  lr = config.finetune_lr if finetune else config.lr
  members = retrain_members(sweep)
  hparams = train_lib.Hparams(lr=jnp.full((len(members),), lr, jnp.float32),
                              weight_decay=jnp.full((len(members),), config.weight_decay,
                                                    jnp.float32),
                              sam_rho=jnp.zeros((len(members),), jnp.float32))
  return spec, total, hparams, members


def retrain_start(sweep: Sweep, temperature: float):
  """Initial retrain population: pruned dense weights (mask applied), dense BN statistics,
  fresh momentum, data order from the retrain seed; and the member masks."""
  num_d, num_r = len(sweep.densities), len(sweep.retrain_seeds)
  dense = dense_checkpoint(sweep, temperature)
  one_params = jax.tree.map(lambda a: a[0], dense['params'])
  masks = _flat_members(load_masks(sweep, temperature, one_params)['masks'])  # (S*D, ...)
  per_member = lambda a: jnp.repeat(a, num_d * num_r, axis=0)  # (S, ...) -> (S*D*R, ...)
  member_masks = jax.tree.map(lambda a: jnp.repeat(a, num_r, axis=0), masks)
  params = pruning.apply_mask(jax.tree.map(per_member, dense['params']), member_masks)
  stats = jax.tree.map(per_member, dense['batch_stats'])
  keys = jnp.stack([train_lib.data_key(m['retrain_seed'], 1) for m in retrain_members(sweep)])
  states = jax.vmap(functools.partial(train_lib.member_state,
                                      momentum=sweep.config.retrain.momentum))(params, stats, keys)
  return states, member_masks


def stage_retrain(sweep: Sweep) -> None:
  """Retrains every temperature's masked population (one program for all of them)."""
  spec, total, hparams, members = _retrain_setup(sweep)
  num_epochs = grid.epochs_of(total, spec.steps_per_epoch)
  progress = workdir_lib.Progress('retrain', len(members) * total * len(sweep.temperatures))
  for temperature in sweep.temperatures:
    directory = sweep.path / 'retrain' / sweep.key(temperature)
    if num_epochs in checkpoints.steps(directory / 'epochs'):
      progress.skip(len(members) * total, f'{sweep.key(temperature)} done earlier')
      continue
    states, masks = retrain_start(sweep, temperature)
    info = [{'temperature': temperature, **m} for m in members]
    _train_run(sweep, stage='retrain', directory=directory, spec=spec, total_steps=total,
               states=states, hparams=hparams, masks=masks, save_epochs=(num_epochs,),
               resume_every=sweep.config.retrain.resume_every, member_info=info,
               label=f'{sweep.key(temperature)} ({len(members)} members)', progress=progress)


def load_retrained(sweep: Sweep, temperature: float) -> tuple[train_lib.MemberState, dict]:
  """The retrained population of one temperature and its per-epoch history (M, epochs)."""
  spec, total, _, members = _retrain_setup(sweep)
  directory = sweep.path / 'retrain' / sweep.key(temperature) / 'epochs'
  step = grid.epochs_of(total, spec.steps_per_epoch)
  if step not in checkpoints.steps(directory):
    raise SweepError(f'missing retrained models {directory}/{step}: run the retrain stage first')
  template = _state_template(sweep.model, sweep.dataset.input_shape, len(members))
  return _restore_states(directory, step, template, sweep.device)


# ----------------------------------------------------------------------------- measure


def pair_indices(sweep: Sweep) -> list[dict[str, Any]]:
  """Every (dense seed, density, seed pair) with the member indices of both ends."""
  index = {(m['dense_seed'], m['density'], m['retrain_seed']): i
           for i, m in enumerate(retrain_members(sweep))}
  return [{'dense_seed': s, 'density': d, 'seed_a': a, 'seed_b': b,
           'index_a': index[s, d, a], 'index_b': index[s, d, b]}
          for s in sweep.dense_seeds for d in sweep.densities
          for a, b in grid.seed_pairs(sweep.retrain_seeds)]


@functools.lru_cache(maxsize=4)
def _cka_outputs_fn(model, num_examples: int):
  def logits(params, stats, dataset):
    return train_lib.predict(model, params, stats, dataset, dataset.x_train[:num_examples])
  return jax.jit(jax.vmap(logits, in_axes=(0, 0, None)))


def stage_measure(sweep: Sweep) -> None:
  """Test error, LMC curve and CKA for every retrain-seed pair of every cell."""
  config = sweep.config.measure
  progress = workdir_lib.Progress('measure', len(sweep.temperatures))
  measure_pairs = landscape.make_pair_measurer(sweep.model, config.lmc_points,
                                               config.bn_batch_size, config.point_batching,
                                               config.lmc_test)
  estimator = config.cka_estimator
  pair_cka = jax.jit(jax.vmap(functools.partial(cka_lib.output_cka, estimator=estimator)))
  chunk = int(sweep.config.measure.pairs_per_call)
  for temperature in sweep.temperatures:
    path = sweep.path / 'measure' / f'{sweep.key(temperature)}.json'
    sync(f'measure {temperature}')
    if path.exists():
      progress.skip(1, f'{sweep.key(temperature)} done earlier')
      continue
    states, history = load_retrained(sweep, temperature)
    test_error = np.asarray(history['test_error'])[:, -config.test_error_epochs:].mean(axis=1)
    pairs = pair_indices(sweep)
    member_diverged = train_lib.diverged(history['loss'], np.asarray(history['test_error'])[:, -1],
                                         sweep.dataset.num_classes)
    masks_info = checkpoints.restore(sweep.path / 'masks' / sweep.key(temperature))
    dense_diverged = train_lib.diverged(
        np.zeros((len(sweep.dense_seeds), 0)), masks_info['dense_test_error'],
        sweep.dataset.num_classes)
    warn_diverged(sweep, 'measure', temperature, member_diverged, dense_diverged)
    index_a = np.array([p['index_a'] for p in pairs])
    index_b = np.array([p['index_b'] for p in pairs])
    num_cka = min(config.cka_examples, sweep.dataset.num_train)
    logits = _cka_outputs_fn(sweep.model, num_cka)(states.params, states.batch_stats,
                                                   sweep.dataset)
    chunks = []
    size = chunk or len(pairs)  # Chunks of pairs bound the device memory of both metrics.
    for start in range(0, len(pairs), size):
      a, b = index_a[start:start + size], index_b[start:start + size]
      take = lambda idx: (lambda x: x[idx])
      measured = measure_pairs(
          jax.tree.map(take(a), states.params), jax.tree.map(take(b), states.params),
          jax.tree.map(take(a), states.batch_stats), sweep.dataset)
      measured.update(pair_cka(logits[a], logits[b]))
      chunks.append(jax.device_get(measured))
    curve = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    cka = {k: curve.pop(k) for k in ('cka_softmax', 'cka_logits')}
    rows = []
    for p, pair in enumerate(pairs):
      rows.append({
          'temperature': temperature, 'dense_seed': pair['dense_seed'],
          'density': pair['density'], 'seed_a': pair['seed_a'], 'seed_b': pair['seed_b'],
          'test_error_a': float(test_error[pair['index_a']]),
          'test_error_b': float(test_error[pair['index_b']]),
          'lmc': float(curve['lmc'][p]), 'lmc_index': int(curve['lmc_index'][p]),
          'cka_softmax': float(cka['cka_softmax'][p]),
          'cka_logits': float(cka['cka_logits'][p]),
          'diverged': bool(member_diverged[pair['index_a']] or member_diverged[pair['index_b']]
                           or dense_diverged[sweep.dense_seeds.index(pair['dense_seed'])]),
          'curve': {k: curve[k][p] for k in curve if k not in ('lmc', 'lmc_index')}})
    if sweep.is_primary:
      workdir_lib.write_json(path, {'temperature': temperature, 'knob': sweep.knob,
                                    'cka_examples': num_cka, 'cka_estimator': estimator,
                                    'pairs': rows})
    progress.advance(1, f'{sweep.key(temperature)} {len(pairs)} pairs', force=True)


def warn_diverged(sweep: Sweep, stage: str, temperature: float, members: np.ndarray,
                  dense: np.ndarray) -> None:
  """One warning line naming diverged retrained members and dense models (process 0 only)."""
  if not sweep.is_primary or not (members.any() or dense.any()):
    return
  chance = 1.0 - 1.0 / sweep.dataset.num_classes
  seeds = [s for s, bad in zip(sweep.dense_seeds, dense) if bad]
  print(f'[{stage}] warning: {sweep.key(temperature)}: {int(members.sum())} of {members.size} '
        f'retrained members and dense seeds {seeds or "none"} diverged (non-finite loss, or at '
        f'chance: test error within {train_lib.CHANCE_MARGIN:g} of {chance:.3f}); their cells stay '
        'unlabelled (results.csv column diverged)', flush=True)


# ----------------------------------------------------------------------------- report

RESULT_COLUMNS = [
    'knob', 'temperature', 'density', 'dense_seed', 'seed_a', 'seed_b', 'test_error',
    'train_error', 'lmc', 'cka_softmax', 'cka_logits', 'regime', 'regime_confidence',
    'test_error_a', 'test_error_b', 'train_error_a', 'train_error_b', 'pruned_test_error',
    'dense_test_error', 'actual_density', 'diverged']
def result_rows(sweep: Sweep, with_curves: bool = False) -> list[dict[str, Any]]:
  """One row per (temperature, density, dense seed, seed pair) from the measure artifacts."""
  rows = []
  seed_index = {s: i for i, s in enumerate(sweep.dense_seeds)}
  density_index = {d: j for j, d in enumerate(sweep.densities)}
  for temperature in sweep.temperatures:
    path = sweep.path / 'measure' / f'{sweep.key(temperature)}.json'
    if not path.exists():
      raise SweepError(f'missing {path}: run the measure stage first')
    measured = workdir_lib.read_json(path)
    masks = checkpoints.restore(sweep.path / 'masks' / sweep.key(temperature))
    for pair in measured['pairs']:
      s, d = seed_index[pair['dense_seed']], density_index[float(pair['density'])]
      curve = {k: np.asarray(v, float) for k, v in pair['curve'].items()}
      row = {k: v for k, v in pair.items() if k != 'curve'}
      row.update(
          knob=sweep.knob,
          test_error=0.5 * (pair['test_error_a'] + pair['test_error_b']),
          train_error_a=float(curve['train_error'][0]),
          train_error_b=float(curve['train_error'][-1]),
          pruned_test_error=float(masks['pruned_test_error'][s, d]),
          dense_test_error=float(masks['dense_test_error'][s]),
          actual_density=float(masks['density'][s, d]),
          diverged=bool(pair.get('diverged', False)))  # Absent in workdirs of <= 0.1.0.
      row['train_error'] = 0.5 * (row['train_error_a'] + row['train_error_b'])
      row = {k: (np.nan if v is None else v) for k, v in row.items()}
      if with_curves:
        row['curve'] = curve
      rows.append(row)
  return rows


def stage_report(sweep: Sweep) -> dict[str, Any]:
  """Writes results.csv, cells.csv, regimes.json, findings.json and the figures."""
  from prunephase import report  # pylint: disable=import-outside-toplevel
  rows = result_rows(sweep, with_curves=True)  # Every process: restoring is collective.
  if not sweep.is_primary:
    return {}
  summary = report.write_report(sweep.path, rows, sweep.knob, sweep.temperatures,
                                sweep.densities, sweep.config.regimes, with_curves=True)
  workdir_lib.write_csv(sweep.path / 'results.csv', rows, RESULT_COLUMNS)  # With labels.
  return summary


def run_stages(sweep: Sweep, stages: Sequence[str]) -> dict[str, Any]:
  """Runs `stages` in pipeline order; returns the report summary (if reported)."""
  functions = {'train': stage_train, 'prune': stage_prune, 'retrain': stage_retrain,
               'measure': stage_measure, 'report': stage_report}
  summary = {}
  for stage in STAGES:
    if stage not in stages:
      continue
    sync(f'stage {stage}')
    start = time.time()
    result = functions[stage](sweep)
    sweep.timings[stage] = time.time() - start
    if stage == 'report':
      summary = result
  return summary


def run_sweep(config, workdir: str | pathlib.Path,
              stages: Sequence[str] = STAGES) -> tuple[Sweep, dict[str, Any]]:
  """Validates `config`, opens (locks) the workdir and runs `stages`.

  Bad input fails before anything is written: the config is validated and the dataset loaded
  before the workdir is touched.

  Returns:
    The Sweep (with per-stage timings) and the report summary ({} without 'report').
  """
  grid.validate(config)
  sweep = Sweep(config, pathlib.Path(workdir))
  if set(stages) - {'report'}:
    sweep.dataset  # pylint: disable=pointless-statement
    sweep.mesh  # pylint: disable=pointless-statement  # A mesh that does not fit the devices.
  # Process 0 holds the workdir (lock, config check, config.json); the others wait for it.
  opened = workdir_lib.Workdir(workdir, config.to_dict()) if sweep.is_primary else None
  try:
    sync('workdir open')
    result = sweep, run_stages(sweep, stages)
    sync('sweep done')
    return result
  finally:
    if opened is not None:
      opened.release()
