"""How a population program is laid out in calls: how many training steps one jitted call runs
(a whole epoch, chunks of steps, or one step), and how many members are vmapped together.

`config.train.steps_per_call` ('auto' by default) is resolved here into the
`PopulationProgram.steps_per_call` of `population.py`. A whole epoch in one `lax.scan` is fastest
where per-step dispatch would dominate (small models, accelerators); XLA:CPU, however, runs the
gradient convolutions inside a loop body far slower than outside one. Seen in the compiled HLO
(jax 0.10.2): outside a loop the kernel-gradient convolution is rewritten to the canonical
dimension order and sent to a fast fused kernel; inside a while body it keeps its
`f01b_i01o->01bf` form and runs about 3x slower (batch 64, 32x32x16 maps).

Measured with `benchmarks/cifar_population.py` (PreResNet-20, one member, batch 64, f32, 2 CPU
cores shared with other jobs), training images/s: whole-epoch scan 5.7; two steps per call as
straight-line code 3.5; one step per call as straight-line code 85.7. One step per call as a
`lax.scan` of length 1 (or a fully unrolled one) was about as slow as the whole-epoch scan.
So chunks are traced as straight-line code (a Python loop over their steps,
`train.train_steps(unroll=True)`), and 'auto' runs models with convolutions one step per call
on the CPU backend.
"""

from collections.abc import Sequence
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from prunephase.config import names

# The values and their parsing live with the other config names (no JAX needed to validate).
STEPS_PER_CALL = names.STEPS_PER_CALL
parse_steps_per_call = names.parse_steps_per_call
parse_members_per_chunk = names.parse_members_per_chunk
# Members vmapped together per device on the CPU backend with 'auto'. The default retrain
# population (36 members of the 1D CNN, 2 CPU devices): 1 or 2 per chunk ~1.4 s per epoch,
# 3 ~1.6 s, 6 ~2.0 s, all 18 at once ~2.4 s (likely the cache: one of the 18-member
# population's intermediates, 18 x 64 x 20 x 32 floats, is 2.9 MB against 1 MiB of L2 per core).
CPU_MEMBERS_PER_CHUNK = 2


@functools.lru_cache(maxsize=32)
def has_convolution(model: nn.Module, input_shape: tuple[int, ...]) -> bool:
  """Whether the model's forward pass holds a convolution (traced, nothing is computed)."""
  jaxpr = jax.make_jaxpr(lambda x: model.init(jax.random.PRNGKey(0), x, train=False))(
      jax.ShapeDtypeStruct((2, *input_shape), jnp.float32))
  return 'conv_general_dilated' in str(jaxpr)


def resolve_steps_per_call(value: str | int, model: nn.Module, input_shape: Sequence[int],
                           backend: str | None = None) -> int | None:
  """Training steps per jitted call; None = a whole epoch in one `lax.scan`.

  'auto' is one step per call for models with convolutions on the CPU backend and a whole
  epoch otherwise. XLA:CPU runs the gradient convolutions of a loop body many times slower
  than the same convolutions outside a loop (see the module docstring; the JAX issue
  "Convolution is significantly slower inside a loop body (CPU)"), so there each step is its
  own call; dispatch costs little against such a step. The 1D CNN (im2col + matmul) and the
  MLP have no convolution and keep whole-epoch scans.

  Args:
    value: 'auto', 'epoch' or N >= 1 (chunks of N steps per call, unrolled: no loop).
    model: the Flax module.
    input_shape: one example's shape (no batch axis).
    backend: 'cpu', 'gpu', 'tpu' (default: JAX's default backend).
  """
  value = parse_steps_per_call(value)
  if value == 'epoch':
    return None
  if value == 'auto':
    backend = backend or jax.default_backend()
    return 1 if backend == 'cpu' and has_convolution(model, tuple(input_shape)) else None
  return value


def resolve_members_per_chunk(value: str | int, model: nn.Module, input_shape: Sequence[int],
                              backend: str | None = None) -> int | None:
  """Members vmapped together on each device (None = all of them at once).

  'auto' on the CPU backend is 1 for models with convolutions (`vmap` of a convolution over
  member kernels lowers to a grouped convolution, which XLA:CPU runs slowly; one member per
  chunk is a plain convolution, and with their one step per call each chunk is a call of its
  own, `population.steps_program`, so the program is compiled for one member per device) and
  `CPU_MEMBERS_PER_CHUNK` otherwise (a vmapped population's
  intermediates outgrow the caches); on accelerators, whose throughput grows with the batch,
  all members at once. A whole number N >= 1 is N, 0 is all at once.
  """
  value = parse_members_per_chunk(value)
  if value == 'auto':
    backend = backend or jax.default_backend()
    if backend != 'cpu':
      return None
    return 1 if has_convolution(model, tuple(input_shape)) else CPU_MEMBERS_PER_CHUNK
  return value or None
