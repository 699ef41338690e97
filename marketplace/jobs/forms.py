from decimal import Decimal
from typing import cast

from django import forms
from django.conf import settings

from marketplace.jobs import conf
from marketplace.jobs.models import Job


class JobQuoteForm(forms.Form):
    """Types and HTML bounds only; `services.job_quote` is the judge of what a job may be."""

    name = forms.CharField(max_length=200, required=False)
    frame_start = forms.IntegerField(min_value=conf.MIN_FRAME, max_value=conf.MAX_FRAME)
    frame_end = forms.IntegerField(min_value=conf.MIN_FRAME, max_value=conf.MAX_FRAME)
    frame_step = forms.IntegerField(min_value=1, initial=1)
    resolution_x = forms.IntegerField(label="Width (px)", min_value=conf.MIN_SIDE, max_value=conf.MAX_SIDE)
    resolution_y = forms.IntegerField(label="Height (px)", min_value=conf.MIN_SIDE, max_value=conf.MAX_SIDE)
    samples = forms.IntegerField(min_value=1, max_value=conf.MAX_SAMPLES)
    use_denoising = forms.BooleanField(label="Denoise", required=False)
    output_format = forms.ChoiceField(choices=Job.Output.choices, initial=Job.Output.PNG)
    priority = forms.IntegerField(
        min_value=0,
        max_value=conf.MAX_PRIORITY,
        initial=0,
        help_text=f"higher renders first, and costs more: each level adds "
        f"{conf.PRIORITY_PREMIUM_BPS / 100:g} % to the rate",
    )
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0)
    tiles = forms.TypedChoiceField(
        label="Split into tiles",
        coerce=int,
        required=False,
        empty_value=1,  # type: ignore[arg-type]  # django-stubs: any value (here the coerced int), not only str
        initial=1,
        help_text="a still only (one frame, no denoising): separate nodes render the tiles in parallel, "
        "then they are assembled into one image; same price",
    )
    max_price_tokens = forms.DecimalField(
        label="Maximum price per frame (tokens)",
        required=False,
        min_value=0,
        decimal_places=6,
        help_text="refuse the quote above this price",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        tiles = cast(forms.TypedChoiceField, self.fields["tiles"])
        tiles.choices = [(1, "no (1\N{MULTIPLICATION SIGN}1)")] + [
            (n, f"{n}\N{MULTIPLICATION SIGN}{n} = {n * n} tiles") for n in range(2, conf.MAX_TILE_SIDE + 1)
        ]

    @classmethod
    def initial_from_scene(cls, scene) -> dict:
        report = scene.report
        return {
            "name": scene.name,
            "frame_start": report.get("frame_start"),
            "frame_end": report.get("frame_end"),
            "frame_step": report.get("frame_step", 1),
            "resolution_x": report.get("effective_width"),
            "resolution_y": report.get("effective_height"),
            "samples": report.get("samples"),
            "use_denoising": bool(report.get("use_denoising")),
        }

    def quote_kwargs(self) -> dict:
        data = dict(self.cleaned_data)
        price = data.pop("max_price_tokens")
        data["max_price_per_frame"] = None if price is None else int(price * Decimal(settings.MICRO))
        return data
