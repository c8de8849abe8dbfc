"""The measurements behind astro_stargal's documentation, as one package of scripts.

Run each script as a module from the repository root::

    python -m benchmarks.NAME [options]      # --help lists the options

``python -m`` puts the root on the import path, so a checkout needs no
installation; the bundled model is then read from ``weights/``.

Shared helpers (synthetic and simulated skies, the held-out evaluation, the
weights, timing, exact-PSF photometry, prerequisites) live in
`benchmarks.common`; the scripts use only the public faces of `astro_stargal`.
No script installs anything: a missing prerequisite stops it with a message
that says what to install.

Prerequisites common to all: astro_stargal's dependencies (PyTorch, astropy,
photutils). GalSim (``astro_stargal[sim]``) wherever a sky is simulated;
matplotlib (``astro_stargal[plot]``) for figures.

Times are for the defaults on the 2-core development CPU (an x86_64 machine
shared with other work, so they are indicative). Results are printed; the
copies quoted by the documentation are in ``benchmarks/results/``.

Making the documentation's figures and tables
---------------------------------------------
``make_docs_figures``
    Redraws every figure in ``docs/_static/``, ``docs/comparison.md`` and the
    model-card tables (``benchmarks/results/model_card_tables.md``) from
    ``benchmarks/results/`` and the bundled demo field. Under a minute.
    Needs matplotlib.
``make_demo_data``
    Regenerates the bundled demo field (``astro_stargal/data/``). About 10 s.
    Needs GalSim.

Speed and memory
----------------
``benchmark_cli_startup``
    Wall time of ``astro-stargal --help``, ``classify --help``, two argument
    errors and ``info`` (time to its first line and in total), each in a
    fresh interpreter. About a minute. The goal: ``--help`` under 1.5 s.
``benchmark_speed``
    Sources per second of `classify_sources` end to end against the network
    alone, for both bundled models side by side (``--models``), and
    SExtractor's single CLASS_STAR pass on the same r image, with the ratios.
    About 10 minutes on the busy 2-core CPU for 5,000 rows; the headline GPU
    figures need ``--device cuda --sources 100000``. Results:
    ``benchmark_speed_cpu.txt``, ``benchmark_speed_fast_cpu.txt``,
    ``benchmark_speed_h100_*.txt``. Needs GalSim unless ``--sky-dir`` is
    given; SExtractor (``source-extractor``) is left out with a message when
    it is not installed.
``benchmark_memory``
    Peak resident memory of `classify_sources` for 10^4, 10^5 and 10^6 sources
    (each in a fresh process) on a 4096² noise field. About 30 minutes (the
    10^6 run takes 28). Results: ``benchmark_memory_cpu.txt``.
``benchmark_neighbours``
    Time of the BLENDED neighbour search for 10^4 to 10^6 sources. About
    30 s. Results: ``benchmark_neighbours_cpu.txt``.
``benchmark_dask``
    `~astro_stargal.distributed.classify_tiles` on one and two dask workers
    against a local loop, and the per-tile overhead. About 2 minutes. Needs
    dask's ``distributed`` (``astro_stargal[distributed]``). Results:
    ``benchmark_dask_cpu.txt``.

Accuracy of the bundled model
-----------------------------
``evaluate_model``
    Acceptance figures of a model on a simulated held-out sky (recall per
    class at r < 25, per magnitude bin, ECE, AUC); ``--json`` and ``--table``
    keep the summary and the classified sources. 2-4 minutes per 48-tile sky
    (``--orientations 8``: about 30). Results: ``fused/cpu_test_skies_48.json``
    and the other model folders.
``compare_peers``
    astro_stargal against SExtractor's CLASS_STAR and SPREAD_MODEL (with
    PSFEx) on held-out tiles; writes ``compare_peers.ecsv``,
    ``compare_peers_by_magnitude.ecsv``, ``docs/comparison.md`` and
    ``docs/_static/comparison.png``. A few minutes for the default 4 tiles;
    roughly 15 minutes for the 48 tiles of the documentation (the recorded
    run: 6 minutes of SExtractor and PSFEx and 2 of classification, after
    simulating the tiles). Needs
    GalSim, and the SExtractor and PSFEx programs on the PATH (e.g. the Debian
    packages ``source-extractor`` and ``psfex``).
``compare_fast_model``
    ``csst-fast`` against the default model on a held-out nominal sky: errors
    at r < 25 and their ratio, recall, ECE, and the errors by magnitude,
    galaxy size and ``BLENDED``. About 10 minutes for 12 tiles on the busy
    CPU. Needs GalSim. Results: ``compare_fast_model.txt`` and ``.json``.
``compare_errors``
    Whether two models miss the same sources, and what their ensemble does,
    from two ``evaluate_model --table`` outputs. Seconds. Results:
    ``compare_errors_cpu.txt``.
``colour_limit``
    How many compact galaxies an ideal flux-only classifier would miss on a
    nominal sky (``evaluate_model --table`` output needed). About 20 minutes
    per template population on the 48-tile sky. Needs GalSim. Results:
    ``colour_limit_*_cpu.txt``.
``colour_probe``
    Whether the catalog features separate compact galaxies from stars: small
    probes trained on half a held-out sky (``evaluate_model --table`` output
    needed). Minutes; its time on the 48-tile skies was not recorded. Needs
    GalSim for ``--exact-psf``. Results: ``colour_probe_*cpu.txt``.
``quantisation_check``
    The shipped int8 model against the float weights the GPU session brings
    back, on a held-out sky: twice the time of ``evaluate_model``.

Training
--------
``train_bundled_model``
    The recipe behind ``weights/``: simulate the training and test skies,
    train the fused model and the ablation, evaluate. Needs a GPU (under
    10 minutes on an H100 with 16 cores) and GalSim; ``--quick`` is a
    2-minute smoke run on the CPU. Logs: ``train_h100_*.log``,
    ``*/history.csv``, ``*/test_metrics.json``.
``train_fast_model``
    The recipe behind ``weights/csst-fast``: simulate 56 varied tiles, prepare
    them (with the default model's logits as soft targets) and train the
    compact model. About 7 minutes of simulation, 20 of preparation and 13
    of training on the busy 2-core CPU. Needs GalSim. Results:
    ``train_fast_model_history.csv``.
``augmentation_ablation``
    The same small model trained with and without augmentation, tested on a
    held-out sky. About 15 minutes (two 7-minute ResNet-18 trainings).
    Results: ``augmentation_ablation_cpu.json``.
``device_session.sh``
    The GPU session that ran ``train_bundled_model`` for the bundled weights
    (about 9 minutes on an H100; ``QUICK=1`` is a 2-minute CPU smoke run).
"""
