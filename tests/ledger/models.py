"""What the fault tests count: one row per committed run of a test job.

`key` is deliberately not unique: a doubled effect must show up as a second row, not be
hidden by a constraint. Only the platform's effect-once key may prevent it.
"""

from django.db import models


class Effect(models.Model):
    key = models.CharField(max_length=255, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key
