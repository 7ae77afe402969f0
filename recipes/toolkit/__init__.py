"""Task-agnostic recipe toolkit: what every task imports, no task's names in it.

==============  =================================================================================
``run``         trainer building, resume, preemption, atomic checkpoints, DDP launch, run records,
                run summaries, the private Lightning names used
``data``        Kaldi filterbanks, the memory-mapped feature cache, prepared corpora, frame-budget
                batching, augmentation, the data module (a task gives it its corpus and labels)
``model``       front end -> rnnlib encoder -> linear (``crdnn``: the CRDNN's 2-D conv and DNN
                blocks around the encoder)
``ctc``         the CTC recogniser, its decoding, the steps of its entry points, transcription
``framewise``   frame targets, phone-loop Viterbi, alignments and boundary accuracy
``evaluation``  error rates, per-utterance reports, sclite files, significance, timestamps, plots
``inference``   the Python API of a trained recogniser (checkpoint or package)
``package``     export of a self-contained model folder and its runtime (torch + torchaudio)
==============  =================================================================================
"""
