"""The panel, in Output properties: connection, Check, Quote, Submit, progress, Download."""

from __future__ import annotations

import bpy

from . import state


def _lines(layout, title: str, lines: list[str], icon: str) -> None:
    if not lines:
        return
    box = layout.box()
    box.label(text=title, icon=icon)
    for line in lines:
        for chunk in _wrap(line, 70):
            box.label(text=chunk)


def _wrap(text: str, width: int) -> list[str]:
    words, out, current = text.split(), [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    return [*out, current] if current else out


class RENDER_MARKET_PT_panel(bpy.types.Panel):
    bl_label = "Render Market"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"

    def draw(self, context):
        from .ops import prefs

        layout = self.layout
        scene = context.scene
        rm = scene.render_market
        p = prefs()
        col = layout.column(align=True)
        col.prop(p, "server_url")
        col.prop(p, "token")
        row = layout.row(align=True)
        row.operator("render_market.check", icon="VIEWZOOM")
        row.operator("render_market.quote", icon="EXPORT")
        row.operator("render_market.submit", icon="PLAY")
        if rm.busy:
            layout.label(text=f"{rm.busy}: {rm.status}", icon="SORTTIME")
        elif rm.status:
            layout.label(text=rm.status, icon="INFO")
        if rm.error:
            _lines(layout, "The server says:" if rm.job_id or rm.scene_id else "Error:", [rm.error], "ERROR")

        check = state.load(scene, "check")
        if check:
            _lines(layout, "Would be refused:", check.get("blocking", []), "CANCEL")
            _lines(layout, "Packing takes care of:", check.get("fixed_by_packing", []), "PACKAGE")
            _lines(layout, "Warnings:", check.get("warnings", []), "ERROR")

        quote = state.load(scene, "quote")
        upload = state.load(scene, "upload")
        if quote:
            box = layout.box()
            box.label(text=f"Quote for job {rm.job_id}", icon="FUND")
            box.label(
                text=f"Total: {state.tokens(quote.get('total'))} tokens for {quote.get('frames', '?')} frames "
                f"({state.tokens(quote.get('price_per_frame'))} each)"
            )
            box.label(text=f"Estimated time: {state.duration(quote.get('estimated_seconds'))}")
            if quote.get("expires_at"):
                box.label(text=f"Accept before {quote['expires_at']}")
            if upload:
                box.label(
                    text=f"Uploaded {len(upload['sent_files'])} of {upload['files']} files, "
                    f"{upload['sent_bytes']:,} of {upload['total_bytes']:,} bytes ({upload['method']})"
                )
            _lines(box, "Notes:", [*upload.get("notes", []), *quote.get("warnings", [])], "INFO")

        job = state.load(scene, "job")
        if job and job.get("state") != "quoted":
            pr = state.progress(job)
            box = layout.box()
            box.label(text=f"Job {rm.job_id}: {pr['state']}", icon="RENDER_ANIMATION")
            box.label(
                text=f"Frames done: {pr['frames_done']} / {pr['frames_total']} ({pr['frames_rendering']} rendering)"
            )
            box.label(
                text=f"Cost so far: {state.tokens(pr['cost_so_far'])} tokens"
                f" (escrow left {state.tokens(pr['escrow_left'])})"
            )
            box.label(text=f"Nodes: {pr['nodes']}    Failures: {pr['frames_failed']} failed, {pr['retries']} retried")
            row = box.row(align=True)
            row.operator("render_market.watch", icon="FILE_REFRESH")
            row.operator("render_market.download", icon="IMPORT")
            row.operator("render_market.cancel", icon="X")
        download = state.load(scene, "download")
        if download:
            layout.label(
                text=f"Downloaded {len(download['files'])} file(s) into {download['folder']}", icon="CHECKMARK"
            )


classes = (RENDER_MARKET_PT_panel,)
