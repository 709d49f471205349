"""One report over experiments and stage runs: collect rows, draw plots, write Markdown and HTML.

The command ``python -m pipelines.report RUN_DIR [RUN_DIR ...]`` drives
:func:`tfq.reporting.build.build_report`. Modules, in pipeline order::

    collect      run directories -> a Collection (rows, curves, sensitivity, commands)
    environment  TensorFlow/LiteRT versions, CPU model, cores
    document     a tiny block model rendered to Markdown and self-contained HTML
    build        Collection -> tables + plots (tfq.plots) -> report.md, report.html

Nothing here imports TensorFlow; stage outputs are read from their JSON files.
"""
