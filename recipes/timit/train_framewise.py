"""Train a framewise phone recogniser (frame cross-entropy, phone-loop Viterbi decoding), the
pytorch-kaldi way; evaluate the best checkpoint (PER, frame accuracy, forced-alignment
boundaries) and write the run directory.

python -m recipes.timit.train_framewise                # Light GRU on the built-in corpus
python -m recipes.timit.train_framewise experiment=pytorch_kaldi_ligru data=timit data.root=...
python -m recipes.timit.eval ckpt_path=.../best.ckpt decoding.self_loop_prob=0.7
"""

import hydra
from omegaconf import DictConfig

from recipes.timit.training import start_training
from recipes.toolkit.config import register_resolvers
from recipes.toolkit.framewise.data import FramewiseDataModule
from recipes.toolkit.framewise.module import FramewiseRecognizer
from recipes.toolkit.workflow import train_and_evaluate


def train(cfg: DictConfig) -> dict:
    """Fit, evaluate the best checkpoint on ``cfg.eval_splits``, write results; return them."""
    module, datamodule = start_training(cfg, FramewiseRecognizer, FramewiseDataModule)
    module.set_phone_loop(datamodule.train_phone_sequences(), datamodule.train_frame_counts())
    return train_and_evaluate(cfg, module, datamodule)


register_resolvers()  # ${shared_conf:}: the primary configs find the shared groups with it


@hydra.main(version_base="1.3", config_path="conf", config_name="train_framewise")
def main(cfg: DictConfig) -> float | None:
    results = train(cfg)
    return results["eval"].get("dev", {}).get("per")


if __name__ == "__main__":
    main()
