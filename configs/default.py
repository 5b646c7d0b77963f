r"""The embedded default: the three-regime diagram on MNIST-1D, on a laptop CPU.

Command (the README's first set-up command runs it):

  prunephase --config=configs/default.py --workdir=runs/default

`--config=configs/default.py:quick` is a smoke-sized grid (under a minute).

Load = density of the one-shot layerwise-uniform magnitude pruned model; retraining by lr
rewinding (the schedule replayed from the pruned weights); 3 dense x 2 retrain seeds.

Temperature here = dense batch size (16 ... 256, every size trained for exactly 1,500 steps;
smaller = hotter), the only MNIST-1D setting of the search in docs/default_search.md that
reproduces all three of the paper's findings.

Measured on this project's idle 2-core CPU machine: 5 min 44 s (train 59 s, prune 5 s, retrain
3 min 55 s, measure 41 s, report 1 s); `:quick` 35 s. The report's checks (findings.json):
transition reproduced (4 % density: batch 32 beats batch 256 by 0.111 test error, twice the
seed noise 0.102 -- a small margin; 40 %: batch 256 within 0.006 of the best), connectivity
reproduced (LMC -0.185 at 4 %, batch 256; |LMC| <= 0.001 at 40 %), similarity reproduced (CKA
0.9968 -> 0.9992 at 40 % from batch 16 to 256). Not shown: the epoch family, the paper's own
temperature, gives no transition on MNIST-1D.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """The default config; `arg='quick'` shrinks the grid for a smoke run."""
  config = ml_collections.ConfigDict()

  # Data. MNIST-1D is generated procedurally by the `mnist1d` package, offline.
  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = 'mnist1d'  # 'mnist1d' or a tfds dataset: cifar10, cifar100, svhn_cropped, mnist, fashion_mnist.
  config.dataset.num_samples = 5000  # mnist1d: train + test examples generated.
  config.dataset.train_split = 0.8  # mnist1d: fraction of them used for training.
  config.dataset.data_seed = 42  # mnist1d: generator seed (the package's default).
  config.dataset.data_dir = ''  # tfds: a prepared data_dir ('' = tfds' default).
  config.dataset.num_train = 0  # Use only the first N train examples (0 = all).
  config.dataset.num_test = 0  # Use only the first N test examples (0 = all).

  # Model. Prunable: every conv/dense kernel except the classifier head (as in the paper).
  config.model = ml_collections.ConfigDict()
  config.model.name = 'cnn1d'  # mlp | cnn1d | preresnet20 | preresnet56 | vgg11 | vgg16.
  config.model.widths = (32, 32, 32)  # cnn1d/mlp: channels (units) per layer.
  config.model.kernel_sizes = (5, 5, 5)  # cnn1d: taps per conv layer.
  config.model.strides = (2, 2, 2)  # cnn1d: stride per conv layer.
  config.model.width = 1  # preresnet: width multiplier of 16/32/64 channels.
  config.model.prune_head = False  # Also prune the classifier kernel.
  config.model.mixed_precision = False  # bf16 compute, f32 params and BN statistics.

  # Dense training (stage `train`). SGD with momentum and coupled weight decay, or SAM.
  config.dense = ml_collections.ConfigDict()
  config.dense.optimizer = 'sgd'  # sgd | sam.
  config.dense.lr = 0.1  # Base learning rate.
  config.dense.momentum = 0.9
  config.dense.weight_decay = 1e-4  # Coupled (added to the gradient), like torch SGD.
  config.dense.sam_rho = 0.05  # SAM radius (used when optimizer = sam).
  config.dense.batch_size = 64
  config.dense.epochs = 24  # Length of the run (epoch family: checkpoints inside it).
  config.dense.iterations = 1500  # Batch-size family: exactly this many steps for every batch.
  config.dense.lr_decay = 0.1  # Factor at each decay.
  config.dense.lr_decay_epochs = ()  # Decay at these epochs ...
  config.dense.lr_decay_fractions = (0.5, 0.75)  # ... or at these fractions of the run.
  config.dense.augmentation = 'none'  # none | crop_flip (images).
  config.dense.seeds = (1, 2, 3)  # Dense seeds (init and data order), vmapped.
  config.dense.resume_every = 0  # Extra resume checkpoint every N epochs (0 = off).

  # Temperature: the dense hyperparameter whose value is the temperature.
  #   epochs: checkpoints of one run (hotter = fewer);  batch_size: one run per value at
  #   dense.iterations steps (hotter = smaller);  lr, weight_decay, sam_rho: one vmapped
  #   population (hotter = larger).
  config.temperature = ml_collections.ConfigDict()
  config.temperature.knob = 'batch_size'
  config.temperature.grid = (16, 32, 64, 128, 256)

  # Pruning (stage `prune`): one shot from every dense checkpoint to every density.
  config.prune = ml_collections.ConfigDict()
  config.prune.method = 'uniform'  # uniform (the paper's) | global | lamp | random.
  config.prune.densities = (0.04, 0.06, 0.08, 0.12, 0.2, 0.4)  # Fraction of prunable kept.
  config.prune.seed = 0  # For method = random.

  # Retraining (stage `retrain`): masks fixed, pruned weights stay exactly zero.
  config.retrain = ml_collections.ConfigDict()
  config.retrain.mode = 'lr_rewinding'  # lr_rewinding (replay the schedule) | finetune.
  config.retrain.lr = 0.1  # lr_rewinding: base lr of the replayed schedule.
  config.retrain.finetune_lr = 0.001  # finetune: constant lr.
  config.retrain.momentum = 0.9
  config.retrain.weight_decay = 1e-4
  config.retrain.batch_size = 64
  config.retrain.epochs = 24
  config.retrain.lr_decay = 0.1
  config.retrain.lr_decay_epochs = ()
  config.retrain.lr_decay_fractions = (0.5, 0.75)
  config.retrain.augmentation = 'none'
  config.retrain.seeds = (1, 2)  # Retrain seeds (data order only); pairs give LMC/CKA.
  config.retrain.resume_every = 0  # Extra resume checkpoint every N epochs (0 = off).

  # Measurement (stage `measure`).
  config.measure = ml_collections.ConfigDict()
  config.measure.test_error_epochs = 5  # Test error = mean over the last N retrain epochs.
  config.measure.lmc_points = 11  # Points on the straight path, ends included.
  config.measure.bn_batch_size = 64  # BN recalibration batch size at every point.
  config.measure.lmc_test = True  # Also record test error along the path.
  config.measure.point_batching = 'auto'  # auto (map on CPU, vmap elsewhere) | vmap | map.
  config.measure.pairs_per_call = 0  # Seed pairs per compiled LMC/CKA call (0 = all at once).
  config.measure.cka_examples = 6464  # First N un-augmented train inputs (the paper: 6,464).
  config.measure.cka_estimator = 'biased'  # biased (the paper's) | unbiased.

  # Regime rule: prunephase's own (the paper draws its boundaries by hand).
  config.regimes = ml_collections.ConfigDict()
  config.regimes.lmc_threshold = -0.02  # Regime I where the cell's mean LMC is below this.
  config.regimes.cka_tolerance = 0.002  # II-B where CKA >= column's regime-II maximum - this.
  config.regimes.bootstrap = 200  # Resamples of seed pairs for each label's confidence.
  config.regimes.min_confidence = 0.7  # Below this a label is drawn as uncertain.
  config.regimes.seed = 0

  # Devices (ignored on one device): a ('members', 'data') mesh. members=0 puts every device not
  # on the data axis on the member axis; data > 1 splits each batch (data parallelism).
  config.mesh = ml_collections.ConfigDict()
  config.mesh.members = 0
  config.mesh.data = 1
  config.distributed = False  # Call jax.distributed.initialize() first (multi-host runs).
  # CPU: split the host into this many XLA devices so members train in parallel (0 = one per
  # core; 1 = off). Accelerator backends are unaffected.
  config.cpu_devices = 0

  # Execution of training (results equal up to float rounding): steps per jitted call.
  #   'auto': one step per call for convolutional models on CPU (XLA:CPU runs convolutions
  #   inside a loop many times slower), else 'epoch'; 'epoch': a whole epoch in one lax.scan;
  #   'N' (a whole number): chunks of N steps per call.
  config.train = ml_collections.ConfigDict()
  config.train.steps_per_call = 'auto'

  config.tensorboard = False  # Also TensorBoard event files (`pip install tensorboardX`).

  if arg == 'quick':
    config.dataset.num_samples = 1500
    config.dense.iterations = 400
    config.dense.seeds = (1,)
    config.temperature.grid = (16, 128)
    config.prune.densities = (0.06, 0.4)
    config.retrain.epochs = 6
    config.retrain.seeds = (1, 2, 3)
    config.measure.cka_examples = 500
    config.measure.test_error_epochs = 2
    config.regimes.bootstrap = 20
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; use "" or "quick"')
  return config
