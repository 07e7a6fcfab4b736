"""The ``firereg`` command line: :mod:`firereg.pipelines.cli.app` holds the typer app, one module per command group."""
