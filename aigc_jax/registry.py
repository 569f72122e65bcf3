"""What a config can name: tasks (`config.task.name`), data sources (`config.data.name`, up to a ':') and
evaluator types (`config.evals.<name>.type`); models are in `aigc_jax/models/__init__.py` (tasks build them).

Adding one is a file of its own and one line here (docs/architecture.md has a worked example).
"""

import ml_collections

from aigc_jax.core import evaluation
from aigc_jax.data import image_reports
from aigc_jax.data import pipeline
from aigc_jax.data import tabular
from aigc_jax.data import text
from aigc_jax.data import text_pairs
from aigc_jax.evals import classification as classification_eval
from aigc_jax.evals import coding as coding_eval
from aigc_jax.evals import ct_reconstruction
from aigc_jax.evals import ct_restoration
from aigc_jax.evals import ct_samples
from aigc_jax.evals import language_model as language_model_eval
from aigc_jax.evals import generation as generation_eval
from aigc_jax.evals import risk as risk_eval
from aigc_jax.evals import robustness as robustness_eval
from aigc_jax.tasks import adversarial_training
from aigc_jax.tasks import autoencoder
from aigc_jax.tasks import classification
from aigc_jax.tasks import diffusion
from aigc_jax.tasks import gan
from aigc_jax.tasks import language_model
from aigc_jax.tasks import latent_diffusion
from aigc_jax.tasks import restoration
from aigc_jax.tasks import risk
from aigc_jax.tasks import text_classification

TASKS = {
    'diffusion': diffusion.DiffusionTask,
    'restoration': restoration.RestorationTask,
    'gan': gan.GANTask,
    'vae': autoencoder.VAETask,
    'latent_diffusion': latent_diffusion.LatentDiffusionTask,
    'classification': classification.ClassificationTask,
    'language_model': language_model.LanguageModelTask,
    'text_classification': text_classification.TextClassificationTask,
    'risk': risk.RiskTask,
}

DATA_SOURCES = {
    'phantom_ct': pipeline.CTSlices,   # the built-in CT phantom
    'tfds': pipeline.CTSlices,         # tfds:<name>, a dataset written by `python -m aigc_jax.prepare`
    'text': text.TextRows,             # packed token rows of real medical text (aigc_jax/text/corpora.py)
    'text_labels': text.LabelledText,  # one document per row with its codes (aigc_jax/text/coding.py)
    'text_pairs': text_pairs.TextPairs,  # source → target rows for a conditional generator (reports, translation)
    'phantom_reports': image_reports.PhantomReports,  # CT slices with reports of their known findings
    'tabular': tabular.TabularRows,    # patients of a real cohort, encoded (aigc_jax/tabular/cohorts.py)
}

EVALUATORS = {
    'ct_samples': ct_samples.CTSamples,
    'ct_reconstruction': ct_reconstruction.CTReconstruction,
    'ct_restoration': ct_restoration.CTRestoration,
    'classification': classification_eval.Classification,
    'perplexity': language_model_eval.Perplexity,
    'text_samples': language_model_eval.TextSamples,
    'coding': coding_eval.Coding,
    'report': generation_eval.ReportGeneration,
    'translation': generation_eval.Translation,
    'image_report': generation_eval.ImageReportGeneration,
    'risk': risk_eval.Risk,
    'robustness': robustness_eval.Robustness,
    'restoration_robustness': robustness_eval.RestorationRobustness,
}


def build_task(config: ml_collections.ConfigDict):
  """The task of `config.task`, wrapped for adversarial training where `config.task.adversarial.kind` says."""
  if config.task.name not in TASKS:
    raise ValueError(f'config.task.name={config.task.name!r} is not a task; choose one of {sorted(TASKS)}.')
  task = TASKS[config.task.name](config)
  if (config.task.get('adversarial') or {}).get('kind'):
    task = adversarial_training.AdversarialTraining(task, config)
  return task


def build_data(config: ml_collections.ConfigDict, workdir: str | None = None):
  """The data source of `config.data`; `workdir` is where the run keeps what the source must keep with it
  (the text source's tokenizer), None outside a run."""
  kind = config.data.name.split(':', 1)[0]
  if kind not in DATA_SOURCES:
    raise ValueError(f'config.data.name={config.data.name!r} is not a data source; choose one of '
                     f'{sorted(DATA_SOURCES)} (tfds:<name> for a prepared dataset).')
  data = config.data
  parts = config.get('init_parts') or {}
  if not data.get('tokenizer', 'n/a') and config.get('init_from') and (not parts or 'embed' in parts):
    # Fine-tuning a text model reads the pretraining run's tokenizer: its embeddings were learned for those
    # token ids. (Not a config reference: setting one field of a reference sets the other too, so a run
    # 'from scratch with that tokenizer' would silently load the weights as well.) Parts without the
    # embeddings (a translator's blocks) leave the ids free: the run trains its own tokenizer.
    data = data.copy_and_resolve_references()
    data.tokenizer = config.init_from
  return DATA_SOURCES[kind](data, workdir=workdir)


def build_evaluators(config: ml_collections.ConfigDict, task, data=None) -> dict[str, evaluation.Evaluator]:
  """{name: evaluator} for every entry of `config.evals` (in the config's order), given the run's task and
  data source (an evaluator reads held-out data through it: the text source's tokenizer and splits)."""
  out = {}
  for name, cfg in (config.get('evals') or {}).items():
    kind = cfg.get('type')
    if kind not in EVALUATORS:
      raise ValueError(f'config.evals.{name}.type={kind!r} is not an evaluator; choose one of {sorted(EVALUATORS)}.')
    out[name] = EVALUATORS[kind](cfg, name=name, config=config, task=task, data=data)
  return out
