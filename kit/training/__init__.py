"""Training: config, feature-map augmentation, the seeded loop, evaluation over seeds, run folders."""
from .augment import augment_batch
from .config import TrainConfig, resolve_device
from .evaluate import evaluate, predict_logits, train_eval_seeds
from .loop import make_optimizer, torch_threads, train_model
from .runs import write_run
from .targets import classification_loss, hard_labels, prepare_targets
from .testset import EvalSplit, dataset_reference, load_test_split

__all__ = [
    "EvalSplit",
    "TrainConfig",
    "augment_batch",
    "classification_loss",
    "dataset_reference",
    "evaluate",
    "hard_labels",
    "load_test_split",
    "make_optimizer",
    "predict_logits",
    "prepare_targets",
    "resolve_device",
    "torch_threads",
    "train_eval_seeds",
    "train_model",
    "write_run",
]
