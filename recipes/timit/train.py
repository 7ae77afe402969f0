"""Train a CTC phone recogniser, evaluate the best checkpoint, write the run directory.

python -m recipes.timit.train                          # Light GRU on the built-in corpus
python -m recipes.timit.train rnn=lstm rnn.num_layers=4 trainer.max_epochs=30
python -m recipes.timit.train data=timit data.root=/corpora/TIMIT trainer=gpu
"""

import hydra
import lightning as L
from omegaconf import DictConfig

from recipes.timit.data import timit_datamodule
from recipes.timit.phones import scoring_map
from recipes.toolkit.config import register_resolvers
from recipes.toolkit.ctc.decoding import BigramLM
from recipes.toolkit.ctc.module import CTCRecognizer
from recipes.toolkit.run.validate import validate_run_config
from recipes.toolkit.workflow import build_recognizer, train_and_evaluate


def train(cfg: DictConfig) -> dict:
    """Fit, evaluate the best checkpoint on ``cfg.eval_splits``, write results; return them."""
    validate_run_config(cfg, CTCRecognizer.decoding_methods)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = timit_datamodule(
        cfg.data, cfg.features, cfg.seed, cfg.prepare_workers, cfg.get("augment")
    )
    score_map = scoring_map(int(cfg.data.train_phones), int(cfg.data.score_phones))
    corpus = datamodule.load()
    module = build_recognizer(
        cfg, datamodule.phones, corpus.feature_dim, score_map, corpus.identity, corpus.stats,
        recognizer=CTCRecognizer,
    )  # fmt: skip
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
