"""Architectures, selected by `config.model.name`. Adding one is an import and a line here."""

from aigc_jax.models import autoencoder
from aigc_jax.models import feature_net
from aigc_jax.models import gan
from aigc_jax.models import mlp
from aigc_jax.models import restoration
from aigc_jax.models import transformer
from aigc_jax.models import unet
from aigc_jax.models import vision_text

MODELS = {
    'unet': unet.UNet,
    'conv_autoencoder': restoration.ConvAutoencoder,
    'red_cnn': restoration.REDCNN,
    'dcgan': gan.GAN,
    'kl_autoencoder': autoencoder.KLAutoencoder,
    'vae_encoder_classifier': autoencoder.EncoderClassifier,
    'unet_encoder_classifier': unet.EncoderClassifier,
    'ct_feature_net': feature_net.FeatureNet,
    'transformer': transformer.Transformer,
    'text_classifier': transformer.TextClassifier,
    'encoder_decoder': transformer.EncoderDecoder,
    'image_reporter': vision_text.ImageReporter,
    'tabular_mlp': mlp.TabularMLP,
}


def build(config):
  """The Flax module for `config.model` (every field but `name` is passed as a keyword)."""
  if config.name not in MODELS:
    raise ValueError(f'config.model.name={config.name!r} is not a model; choose one of {sorted(MODELS)}.')
  kwargs = {k: v for k, v in config.items() if k != 'name'}
  try:
    return MODELS[config.name](**kwargs)
  except TypeError as e:
    raise ValueError(f'config.model has a field that {config.name!r} does not take: {e}') from None
