"""Train a CTC phone recogniser, evaluate the best checkpoint, write the run directory.

python -m recipes.timit.train                          # Light GRU on the built-in corpus
python -m recipes.timit.train rnn=lstm rnn.num_layers=4 trainer.max_epochs=30
python -m recipes.timit.train data=timit data.root=/corpora/TIMIT trainer=gpu
"""

import hydra
from omegaconf import DictConfig

from recipes.timit.training import start_training
from recipes.toolkit.config import register_resolvers
from recipes.toolkit.ctc.decoding import BigramLM
from recipes.toolkit.ctc.frame_loss import CTCFrameDataModule
from recipes.toolkit.ctc.module import CTCRecognizer
from recipes.toolkit.data.datamodule import SpeechDataModule
from recipes.toolkit.workflow import train_and_evaluate


def ctc_task(cfg: DictConfig) -> tuple[type[SpeechDataModule], dict]:
    """The data module class and the recogniser's own options of ``cfg``: batches carry frame
    targets only when the frame loss is on (``frame_loss_weight`` > 0)."""
    weight = float(cfg.get("frame_loss_weight", 0.0))
    return (CTCFrameDataModule if weight else SpeechDataModule), {"frame_loss_weight": weight}


def train(cfg: DictConfig) -> dict:
    """Fit, evaluate the best checkpoint on ``cfg.eval_splits``, write results; return them."""
    kind, options = ctc_task(cfg)
    module, datamodule = start_training(cfg, CTCRecognizer, kind, options=options)
    module.set_bigram(
        BigramLM.estimate(datamodule.train_label_sequences(), len(datamodule.phones) + 1)
    )
    return train_and_evaluate(cfg, module, datamodule)


register_resolvers()  # ${shared_conf:}: the primary configs find the shared groups with it


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    results = train(cfg)
    return results["eval"].get("dev", {}).get("per")


if __name__ == "__main__":
    main()
