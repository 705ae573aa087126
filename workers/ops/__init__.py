"""Operations: what people and probes use to watch and run the platform.

Belongs here: health views, queue statistics, Sentry set-up, read-only admin pages of
platform tables. Management commands live in `workers/management/commands` (where
Django finds them) and stay thin: they parse, call a service here or in the other
subpackages, and raise `CommandError`. Must not: anything a task imports.
"""
