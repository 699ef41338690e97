"""bpy child that writes bench_quote's scene variants: the demo scene with one costly feature added each.

Run: python -m tests.bench._quote_scenes '{"demo": "<demo.blend>", "variants": {"<name>": "<out.blend>", ...}}'.
Everything is generated (no downloaded assets), so the bench needs nothing but Blender.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from workers.blend.sandbox import child_main


def _material(bpy: Any, name: str) -> tuple[Any, Any, Any]:
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    tree = mat.node_tree
    for node in list(tree.nodes):
        tree.nodes.remove(node)
    return mat, tree, tree.nodes.new("ShaderNodeOutputMaterial")


def _assign(obj: Any, mat: Any) -> None:
    obj.data.materials.clear()
    obj.data.materials.append(mat)


def flat(bpy: Any) -> None:
    """The cheapest path tracing: plain grey diffuse everywhere (no procedural textures), no bounces at all."""
    mat, tree, out = _material(bpy, "Plain")
    bsdf = tree.nodes.new("ShaderNodeBsdfDiffuse")
    tree.links.new(bsdf.outputs[0], out.inputs["Surface"])
    for name in ("Ground", "NoiseCube", "GlossySphere"):
        _assign(bpy.data.objects[name], mat)
    cyc = bpy.context.scene.cycles
    cyc.max_bounces = 0
    cyc.diffuse_bounces = cyc.glossy_bounces = cyc.transmission_bounces = 0


def volume(bpy: Any) -> None:
    """A scattering fog box around the whole scene, with volume bounces."""
    bpy.ops.mesh.primitive_cube_add(size=14.0, location=(0, 0, 3.0))
    box = bpy.context.active_object
    box.name = "Fog"
    mat, tree, out = _material(bpy, "Fog")
    vol = tree.nodes.new("ShaderNodeVolumePrincipled")
    vol.inputs["Density"].default_value = 0.12
    vol.inputs["Anisotropy"].default_value = 0.3
    tree.links.new(vol.outputs["Volume"], out.inputs["Volume"])
    _assign(box, mat)
    cyc = bpy.context.scene.cycles
    cyc.volume_bounces = 4
    cyc.volume_step_rate = 0.5


def glass(bpy: Any) -> None:
    """Every object glass, and 32 bounces of every kind: caustics paths run long."""
    mat, tree, out = _material(bpy, "Glass")
    bsdf = tree.nodes.new("ShaderNodeBsdfGlass")
    bsdf.inputs["Roughness"].default_value = 0.05
    bsdf.inputs["IOR"].default_value = 1.45
    tree.links.new(bsdf.outputs[0], out.inputs["Surface"])
    for name in ("NoiseCube", "GlossySphere"):
        _assign(bpy.data.objects[name], mat)
    for i in range(6):
        bpy.ops.mesh.primitive_uv_sphere_add(radius=0.45, location=(-1.5 + 0.7 * i, -0.5 + 0.3 * i, 0.5))
        bpy.ops.object.shade_smooth()
        _assign(bpy.context.active_object, mat)
    cyc = bpy.context.scene.cycles
    cyc.max_bounces = cyc.glossy_bounces = cyc.transmission_bounces = cyc.transparent_max_bounces = 32
    cyc.caustics_reflective = cyc.caustics_refractive = True
    cyc.blur_glossy = 0.0


def subdivision(bpy: Any) -> None:
    """Subdivision surface level 4 on the cube and torus, 3 on the sphere: about 0.2 M quads to build and trace."""
    for name in ("NoiseCube", "GlossySphere", "EmissiveTorus"):
        mod = bpy.data.objects[name].modifiers.new("Subsurf", "SUBSURF")
        mod.levels = mod.render_levels = 3 if name == "GlossySphere" else 4


def many_lights(bpy: Any) -> None:
    """64 coloured point lights over the scene (Cycles' light tree samples among them)."""
    for i in range(64):
        angle = 2 * math.pi * i / 64
        bpy.ops.object.light_add(type="POINT", location=(5 * math.cos(angle), 5 * math.sin(angle), 0.5 + (i % 4)))
        light = bpy.context.active_object
        light.data.energy = 40.0
        light.data.shadow_soft_size = 0.4
        light.data.color = (0.5 + 0.5 * math.cos(angle), 0.5 + 0.5 * math.sin(angle), 0.7)


def large_textures(bpy: Any) -> None:
    """Four 4096x4096 generated image textures (colour, roughness, bump) mapped on every object."""
    images = [bpy.data.images.new(f"Tex{i}", 4096, 4096, alpha=False) for i in range(4)]
    for i, image in enumerate(images):
        image.generated_type = "COLOR_GRID" if i % 2 == 0 else "UV_GRID"
    mat, tree, out = _material(bpy, "Textured")
    bsdf = tree.nodes.new("ShaderNodeBsdfPrincipled")
    coords = tree.nodes.new("ShaderNodeTexCoord")
    texs = []
    for i, image in enumerate(images):
        tex = tree.nodes.new("ShaderNodeTexImage")
        tex.image = image
        tex.interpolation = "Cubic"
        mapping = tree.nodes.new("ShaderNodeMapping")
        mapping.inputs["Scale"].default_value = (1.0 + i, 1.0 + i, 1.0)
        tree.links.new(coords.outputs["Generated" if i % 2 else "UV"], mapping.inputs["Vector"])
        tree.links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
        texs.append(tex)
    mix = tree.nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    tree.links.new(texs[0].outputs["Color"], mix.inputs[6])
    tree.links.new(texs[1].outputs["Color"], mix.inputs[7])
    tree.links.new(texs[2].outputs["Color"], mix.inputs["Factor"])
    tree.links.new(mix.outputs[2], bsdf.inputs["Base Color"])
    bump = tree.nodes.new("ShaderNodeBump")
    tree.links.new(texs[3].outputs["Color"], bump.inputs["Height"])
    tree.links.new(bump.outputs["Normal"], bsdf.inputs["Normal"])
    tree.links.new(texs[2].outputs["Color"], bsdf.inputs["Roughness"])
    tree.links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    for name in ("Ground", "NoiseCube", "GlossySphere"):
        _assign(bpy.data.objects[name], mat)


def motion_blur(bpy: Any) -> None:
    """Motion blur over a full frame, the moving objects with 8 motion steps and deformation blur."""
    scene = bpy.context.scene
    scene.render.use_motion_blur = True
    scene.render.motion_blur_shutter = 1.0
    for name in ("NoiseCube", "GlossySphere", "EmissiveTorus"):
        obj = bpy.data.objects[name]
        obj.cycles.use_motion_blur = True
        obj.cycles.use_deform_motion = True
        obj.cycles.motion_steps = 8
    # The camera moves too, so the whole image is blurred.
    cam = scene.camera
    for frame, dx in ((scene.frame_start, 0.0), (scene.frame_end, 3.0)):
        cam.location.x = 7.0 - dx
        cam.keyframe_insert("location", frame=frame)


def hair(bpy: Any) -> None:
    """20,000 hair strands (a particle system, rendered as Cycles curves) on the ground and the cube."""
    mat, tree, out = _material(bpy, "Hair")
    bsdf = tree.nodes.new("ShaderNodeBsdfHairPrincipled")
    tree.links.new(bsdf.outputs[0], out.inputs["Surface"])
    for name, count in (("Ground", 15_000), ("NoiseCube", 5_000)):
        obj = bpy.data.objects[name]
        obj.data.materials.append(mat)
        mod = obj.modifiers.new("Hair", "PARTICLE_SYSTEM")
        settings = mod.particle_system.settings
        settings.type = "HAIR"
        settings.count = count
        settings.hair_length = 0.6 if name == "Ground" else 0.3
        settings.material_slot = "Hair"
        settings.root_radius = 1.0
        settings.radius_scale = 0.01
    bpy.context.scene.cycles_curves.shape = "RIBBONS"


VARIANTS = {
    "flat": flat,
    "volume": volume,
    "glass": glass,
    "subdivision": subdivision,
    "many_lights": many_lights,
    "large_textures": large_textures,
    "motion_blur": motion_blur,
    "hair": hair,
}


def _child(argv: list[str]) -> dict[str, Any]:
    import bpy

    spec = json.loads(argv[0])
    written = {}
    for name, out in spec["variants"].items():
        bpy.ops.wm.open_mainfile(filepath=spec["demo"], load_ui=False, use_scripts=False)
        if name != "demo":
            VARIANTS[name](bpy)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=out, compress=True)
        written[name] = out
    return written


if __name__ == "__main__":
    child_main(_child)
