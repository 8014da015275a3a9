"""``python -m vitkit`` (also what ``torchrun -m vitkit`` runs)."""

from .cli import main

raise SystemExit(main())
