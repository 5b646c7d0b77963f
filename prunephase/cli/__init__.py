"""Command-line entry points: absl flags and one-line errors only; the work is in the library.

  main       prunephase           the sweep (prunephase.pipeline, prunephase.sweep)
  regimes    prunephase-regimes   label and plot any results table (prunephase.cases)
  advise     prunephase-advise    case study 1: which way to move the temperature
                                  (prunephase.advice)
  select     prunephase-select    case studies 2 and 3: which dense model to prune
                                  (prunephase.selection)
  common, table_flags             flags shared by several commands, each defined once

Every module here can be imported together in one process (and next to the library): a flag
used by several commands is defined once, in `common` or `table_flags`.
"""
