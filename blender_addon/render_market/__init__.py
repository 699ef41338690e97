"""Render Market: submit the open scene to the render marketplace without leaving Blender.

Check (inspect here, in the server's words), Quote (pack with blender-asset-tracer, upload only the files the
server lacks, get a price), Submit (accept: the total is held in escrow), watch the progress, Download the
frames into the scene's output path. Server URL and API token live in the add-on preferences, never in the
.blend.
"""

bl_info = {
    "name": "Render Market",
    "author": "Render marketplace",
    "version": (1, 0, 0),
    "blender": (4, 2, 0),
    "location": "Properties > Output > Render Market",
    "description": "Check, quote, submit, watch and download renders on the render marketplace",
    "category": "Render",
}

import os  # noqa: E402
import sys  # noqa: E402

_VENDOR = os.path.join(os.path.dirname(__file__), "_vendor")
if os.path.isdir(_VENDOR) and _VENDOR not in sys.path:
    # The legacy zip carries blender-asset-tracer here; the extension gets it as a wheel from Blender.
    sys.path.append(_VENDOR)

import bpy  # noqa: E402
from bpy.props import EnumProperty, PointerProperty, StringProperty  # noqa: E402

from . import ops, state, tasks, ui  # noqa: E402


class RenderMarketPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    server_url: StringProperty(
        name="Server URL",
        description="the marketplace, e.g. https://render.example.com",
        default="http://127.0.0.1:8000",
    )
    token: StringProperty(
        name="API token",
        description="an API token of your artist account (on the website: /accounts/tokens/); kept in "
        "Blender's preferences, never in the .blend",
        subtype="PASSWORD",
    )
    packing: EnumProperty(
        name="Packing",
        default="AUTO",
        items=[
            ("AUTO", "Automatic", "blender-asset-tracer, or Blender's own pack_all when it cannot read the file"),
            ("BAT", "blender-asset-tracer", "copy the .blend and its files into the bundle, paths rewritten"),
            ("BLENDER", "Blender (pack all)", "pack every external file into a copy of the .blend"),
        ],
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "server_url")
        layout.prop(self, "token")
        layout.prop(self, "packing")


classes = (RenderMarketPreferences, state.RenderMarketScene, *ops.classes, *ui.classes)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.render_market = PointerProperty(type=state.RenderMarketScene)


def unregister():
    tasks.stop_all()
    if bpy.app.timers.is_registered(tasks.pump):
        bpy.app.timers.unregister(tasks.pump)
    del bpy.types.Scene.render_market
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
