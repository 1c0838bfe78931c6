"""The notebooks' library side: the headless runner, each notebook's step as one call, its
control panel, the plots and the statistics they show.

Owns: `runner` (nbclient execution), `parameters` (papermill-style parameters), `settings`
(a notebook's `Parameters`), `steps`, `results`, `cassette_sets` (replay and staged
recording), `cancel` (interrupts), `panel` and `widgets`, `plots`, `stats`, and the bundled
notebooks (`bundled/*.ipynb`).
May import: every other subpackage except `cli`; nothing imports it but `cli`.
"""
