"""On-device augmentation: random crop of the 4-pixel padded image + horizontal flip.

The border is black in raw pixels (the paper pads before normalising), 0 in the tests that pass
no pad value.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prunephase import data as data_lib

PAD = 4


def images(batch=16, height=32, width=32, channels=3, seed=0):
  """Random float images (distinct values, so every crop/flip is identifiable)."""
  return np.random.default_rng(seed).normal(size=(batch, height, width, channels)).astype(
      np.float32)


def reference(image: np.ndarray, dy: int, dx: int, flip: bool) -> np.ndarray:
  """NumPy: zero-pad by 4, take the (H, W) window at (dy, dx), flip left-right if asked."""
  height, width = image.shape[:2]
  padded = np.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)))
  crop = padded[dy:dy + height, dx:dx + width]
  return crop[:, ::-1] if flip else crop


def find_transform(image: np.ndarray, output: np.ndarray):
  """The (dy, dx, flip) that maps `image` to `output` exactly, or None."""
  for dy, dx, flip in itertools.product(range(2 * PAD + 1), range(2 * PAD + 1), (False, True)):
    if np.array_equal(reference(image, dy, dx, flip), output):
      return dy, dx, flip
  return None


@pytest.mark.parametrize('shape', [(8, 32, 32, 3), (5, 28, 28, 1), (3, 12, 20, 2)])
def test_crop_flip_keeps_shape_and_dtype(shape):
  x = jnp.asarray(images(*shape))
  y = data_lib.augment(jax.random.PRNGKey(0), x, 'crop_flip')
  assert y.shape == shape and y.dtype == jnp.float32


def test_unshifted_crop_is_identity_or_exact_flip(monkeypatch):
  x = images(batch=16)
  # Every crop offset = 4 (the centre window of the padded image: no shift).
  monkeypatch.setattr(jax.random, 'randint',
                      lambda key, shape, minval, maxval, *a, **k: jnp.full(shape, PAD, jnp.int32))
  y = np.asarray(data_lib.augment(jax.random.PRNGKey(3), jnp.asarray(x), 'crop_flip'))
  flipped = [bool(np.array_equal(y[i], x[i][:, ::-1])) for i in range(len(x))]
  same = [bool(np.array_equal(y[i], x[i])) for i in range(len(x))]
  assert all(f != s for f, s in zip(flipped, same))  # Exactly one of the two, bit for bit.
  assert any(flipped) and any(same)  # 16 fair coins: both outcomes occur for this key.
  batch_flip = np.asarray(x)[:, :, ::-1]  # The flip of a whole batch is x[:, :, ::-1].
  np.testing.assert_array_equal(y[flipped], batch_flip[flipped])


def test_every_output_is_a_window_of_the_zero_padded_image():
  x = images(batch=16, seed=1)
  y = np.asarray(data_lib.augment(jax.random.PRNGKey(7), jnp.asarray(x), 'crop_flip'))
  transforms = [find_transform(x[i], y[i]) for i in range(len(x))]
  assert all(t is not None for t in transforms), transforms
  shifted = [i for i, t in enumerate(transforms) if t[:2] != (PAD, PAD)]
  assert len(shifted) >= 8  # 80 of 81 offsets shift the image.
  # One shifted example spelled out: zeros enter from the padded side, the rest moves.
  i = shifted[0]
  dy, dx, flip = transforms[i]
  expected = np.zeros_like(x[i])
  src = x[i]
  ys, yd = (slice(dy - PAD, None), slice(0, 32 - (dy - PAD))) if dy >= PAD else (
      slice(0, 32 - (PAD - dy)), slice(PAD - dy, None))
  xs, xd = (slice(dx - PAD, None), slice(0, 32 - (dx - PAD))) if dx >= PAD else (
      slice(0, 32 - (PAD - dx)), slice(PAD - dx, None))
  expected[yd, xd] = src[ys, xs]
  if flip:
    expected = expected[:, ::-1]
  np.testing.assert_array_equal(y[i], expected)


def test_same_key_same_batch_different_keys_differ():
  x = jnp.asarray(images(batch=16, seed=2))
  key = jax.random.PRNGKey(11)
  a = np.asarray(data_lib.augment(key, x, 'crop_flip'))
  b = np.asarray(data_lib.augment(key, x, 'crop_flip'))
  np.testing.assert_array_equal(a, b)
  jitted = jax.jit(data_lib.augment, static_argnums=2)
  np.testing.assert_array_equal(np.asarray(jitted(key, x, 'crop_flip')), a)
  c = np.asarray(data_lib.augment(jax.random.PRNGKey(12), x, 'crop_flip'))
  assert not np.array_equal(a, c)


def test_members_get_different_batches_under_vmap():
  # As in training: one key per member, the same inputs, augmentation vmapped over members.
  x = jnp.asarray(images(batch=8, seed=3))
  keys = jnp.stack([jax.random.PRNGKey(s) for s in (1, 2, 3)])
  out = np.asarray(jax.vmap(lambda k: data_lib.augment(k, x, 'crop_flip'))(keys))
  assert out.shape == (3, *x.shape)
  for a, b in itertools.combinations(range(3), 2):
    assert not np.array_equal(out[a], out[b])
  # Each member's batch is its own key's batch, member by member.
  np.testing.assert_array_equal(out[1], np.asarray(data_lib.augment(keys[1], x, 'crop_flip')))


def test_none_is_identity_and_bad_input_raises():
  x = jnp.asarray(images(batch=2))
  assert data_lib.augment(jax.random.PRNGKey(0), x, 'none') is x
  with pytest.raises(ValueError, match='unknown augmentation'):
    data_lib.augment(jax.random.PRNGKey(0), x, 'cutout')
  with pytest.raises(ValueError, match='crop_flip needs'):
    data_lib.augment(jax.random.PRNGKey(0), x[0], 'crop_flip')


def test_padding_is_black_after_normalisation():
  # The paper pads the raw uint8 image with 0 (black), then normalises: the border of the
  # normalised crop is (0 - mean) / std per channel, never 0 (the mean colour).
  mean = np.array([0.4914, 0.4822, 0.4465], np.float32)
  std = np.array([0.2023, 0.1994, 0.2010], np.float32)
  raw = np.random.default_rng(5).integers(1, 256, size=(8, 32, 32, 3), dtype=np.uint8)
  dataset = data_lib.Dataset(x_train=jnp.asarray(raw), y_train=jnp.zeros(8, jnp.int32),
                             x_test=jnp.asarray(raw), y_test=jnp.zeros(8, jnp.int32),
                             num_classes=10, mean=jnp.asarray(mean), std=jnp.asarray(std))
  black = np.asarray(data_lib.black_value(dataset))
  np.testing.assert_allclose(black, -mean / std, rtol=1e-6)
  x = data_lib.prepare_inputs(dataset, dataset.x_train)
  y = np.asarray(data_lib.augment(jax.random.PRNGKey(7), x, 'crop_flip', black))
  # Reference: pad the raw image with 0, normalise, then crop at the offsets `augment` chose.
  padded = (np.pad(raw, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0))) / 255.0 - mean) / std
  found = 0
  for i in range(len(raw)):
    for dy, dx, flip in itertools.product(range(2 * PAD + 1), range(2 * PAD + 1), (False, True)):
      window = padded[i, dy:dy + 32, dx:dx + 32]
      if np.allclose(window[:, ::-1] if flip else window, y[i], atol=1e-5):
        found += 1
        break
  assert found == len(raw)
  assert (np.isclose(y, black, atol=1e-5).all(-1)).any()  # Black borders occur.
  # Float inputs (MNIST-1D) pad with 0, as before.
  floats = data_lib.Dataset(x_train=jnp.zeros((2, 4, 4, 1)), y_train=jnp.zeros(2, jnp.int32),
                            x_test=jnp.zeros((2, 4, 4, 1)), y_test=jnp.zeros(2, jnp.int32),
                            num_classes=2, mean=jnp.zeros(1), std=jnp.ones(1))
  np.testing.assert_array_equal(data_lib.black_value(floats), [0.0])
