"""SGD with momentum and coupled weight decay (PyTorch's SGD), step learning-rate schedules, SAM.

Per-member hyperparameters (lr, weight decay, SAM rho) are traced arrays, so members that
differ only in them share one compiled program under `vmap`. The optimizer is therefore built
inside the step from those arrays; its state (the momentum buffer) does not depend on them.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

SAM_EPSILON = 1e-12  # davda54/sam: e = rho * g / (||g|| + 1e-12).


def sgd(learning_rate: jax.Array, weight_decay: jax.Array,
        momentum: float = 0.9) -> optax.GradientTransformation:
  """PyTorch SGD (no dampening, no Nesterov): buf = m * buf + (g + wd * w); w -= lr * buf."""
  return optax.chain(
      optax.add_decayed_weights(weight_decay),
      optax.trace(decay=momentum, nesterov=False),
      optax.scale(-learning_rate),
  )


def init_sgd_state(params, momentum: float = 0.9) -> optax.OptState:
  """Optimizer state (zero momentum) for `params`; independent of lr and weight decay."""
  return sgd(jnp.zeros(()), jnp.zeros(()), momentum).init(params)


def step_lr(step: jax.Array, base_lr: jax.Array, boundaries: Sequence[int],
            decay: float) -> jax.Array:
  """Step schedule: `base_lr * decay ** (number of boundaries <= step)`.

  With boundaries at `e * steps_per_epoch` this is PyTorch's MultiStepLR(milestones=e) stepped
  per epoch; with iteration boundaries, the per-iteration MultiStepLR of the batch-size family.
  """
  passed = sum((step >= b).astype(jnp.int32) for b in boundaries) if boundaries else 0
  return base_lr * jnp.asarray(decay, jnp.float32) ** passed


def decay_boundaries(total_steps: int, steps_per_epoch: int, decay_epochs: Sequence[int] = (),
                     decay_fractions: Sequence[float] = ()) -> tuple[int, ...]:
  """Step indices where the lr decays, given epochs (ints) or fractions of the run (floats)."""
  if decay_epochs and decay_fractions:
    raise ValueError('give lr decays as epochs or as fractions, not both')
  for fraction in decay_fractions:
    if not 0.0 < fraction < 1.0:
      raise ValueError(f'lr decay fractions must be in (0, 1), got {fraction}')
  steps = [int(e) * steps_per_epoch for e in decay_epochs]
  steps += [int(round(f * total_steps)) for f in decay_fractions]
  return tuple(sorted(steps))


def sam_perturbation(grads, rho: jax.Array):
  """SAM's ascent step e = rho * g / (||g||_2 + 1e-12), the norm over ALL parameters."""
  scale = rho / (optax.tree.norm(grads) + SAM_EPSILON)
  return jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)
