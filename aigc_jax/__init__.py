"""aigc_jax: generative AI for medicine on JAX/Flax."""
