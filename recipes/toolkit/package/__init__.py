"""Packaged models: a trained recogniser as a folder that runs with torch and torchaudio alone.

==================  ===========================================================================
``runtime``         :class:`~recipes.toolkit.package.runtime.PhoneRecognizer`: features,
                    posteriors, timed phones, from a ``config.json`` and the acoustic model
``audio``           reading audio files and waveforms (16 kHz, int16 scale), the too-short check
``features``        the training filterbanks and their normalisation, without the feature cache
``decoders``        CTC (greedy, beam) and framewise (Viterbi, greedy) frame segmentations
``timing``          timed phones: CTC emission runs, CTC forced alignment, scoring-set mapping
``convert``         a trained recogniser -> the runtime's configuration (``config.json``)
``vendor``          the runtime's source files, copied into a package with relative imports
``card``            ``MODEL_CARD.md``
``export``          writes the folder (weights, configuration, card, runtime, ``rnnlib``)
``onnx_export``     the acoustic model as an ONNX graph written from its weights (``model.onnx``)
``onnx_backend``    posteriors of ``model.onnx`` by onnxruntime (the runtime's ``backend="onnx"``)
==================  ===========================================================================

The first five modules (and the toolkit modules they use: the acoustic model, the filterbank,
frame segments, CTC decoding, the phone loop) import only torch, torchaudio, numpy, ``rnnlib``
and the standard library: they are the code an exported folder carries.
"""
