"""Training: config, feature-map augmentation, the seeded loop, evaluation over seeds, run folders."""

from .augment import augment_batch
from .config import TrainConfig, resolve_device
from .evaluate import evaluate, predict_logits, train_eval_seeds
from .fulldata import DatasetRun, load_for_training, train_on_dataset
from .loop import draw_weights, make_optimizer, set_learning_rate, torch_threads, train_model
from .production import TrainedModel, model_meta, save_trained, train_and_save
from .recipe import Recipe, RecipeSet, recipe_training_set
from .runs import write_run
from .targets import classification_loss, hard_labels, prepare_targets
from .testset import EvalSplit, dataset_reference, load_test_split

__all__ = [
    "DatasetRun",
    "Recipe",
    "RecipeSet",
    "load_for_training",
    "recipe_training_set",
    "train_on_dataset",
    "EvalSplit",
    "TrainedModel",
    "TrainConfig",
    "augment_batch",
    "classification_loss",
    "dataset_reference",
    "evaluate",
    "hard_labels",
    "load_test_split",
    "draw_weights",
    "make_optimizer",
    "set_learning_rate",
    "model_meta",
    "predict_logits",
    "prepare_targets",
    "resolve_device",
    "save_trained",
    "torch_threads",
    "train_and_save",
    "train_eval_seeds",
    "train_model",
    "write_run",
]
