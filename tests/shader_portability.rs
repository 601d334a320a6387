//! Every WGSL shader the generator emits (`densecore::gpu::shader_sources`: each GEMM body of
//! both tile tables × activation or derivative gate × bias × stored Z × operand layout, B as
//! f32 or as bf16/f16 weights, both softmax row passes, every training kernel) parsed, validated and translated by naga, the
//! shader compiler inside wgpu, to each back end wgpu can drive: SPIR-V (Vulkan), MSL (Metal),
//! HLSL (DX12) and GLSL (OpenGL / GLES). No device needed, so a shader that only one platform's
//! translation rejects is caught on any machine.

use densecore::gpu::shader_sources;
use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

/// Parses, validates and translates one shader; the error says which step failed.
fn translate(name: &str, source: &str) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    // The device requests no feature that enables a shader capability (timestamp queries at
    // most, see `Context`), so the shaders must validate without any, except that f16 weights
    // are widened by `unpack2x16float` only where the adapter allows it
    // (`AdapterSummary::f16_in_shader`, wgpu's downlevel flag SHADER_F16_IN_F32).
    let capabilities = match name.contains("b_format: F16") {
        true => Capabilities::SHADER_FLOAT16_IN_FLOAT32,
        false => Capabilities::empty(),
    };
    let info = Validator::new(ValidationFlags::all(), capabilities)
        .validate(&module)
        .map_err(|e| format!("validation: {}", e.emit_to_string(source)))?;

    spv::write_vec(&module, &info, &spv::Options::default(), None)
        .map_err(|e| format!("SPIR-V: {e}"))?;

    // MSL 2.0: what wgpu's Metal backend asks for at the least on the devices it supports.
    let msl_options = msl::Options {
        lang_version: (2, 0),
        ..Default::default()
    };
    msl::write_string(
        &module,
        &info,
        &msl_options,
        &msl::PipelineOptions::default(),
    )
    .map_err(|e| format!("MSL: {e}"))?;

    // Shader model 5.1 (naga's default): the floor of D3D12.
    let mut hlsl_out = String::new();
    let hlsl_options = hlsl::Options::default();
    let hlsl_pipeline = hlsl::PipelineOptions::default();
    hlsl::Writer::new(&mut hlsl_out, &hlsl_options, &hlsl_pipeline)
        .write(&module, &info, None)
        .map_err(|e| format!("HLSL: {e}"))?;

    // GLSL ES 3.10, the first GLES with compute shaders and storage buffers (desktop GL 4.30
    // is its superset); one entry point per translation, as GLSL has a single `main`.
    for ep in &module.entry_points {
        let mut glsl_out = String::new();
        let options = glsl::Options {
            version: glsl::Version::new_gles(310),
            ..Default::default()
        };
        let pipeline = glsl::PipelineOptions {
            shader_stage: ep.stage,
            entry_point: ep.name.clone(),
            multiview: None,
        };
        glsl::Writer::new(
            &mut glsl_out,
            &module,
            &info,
            &options,
            &pipeline,
            naga::proc::BoundsCheckPolicies::default(),
        )
        .and_then(|mut w| w.write())
        .map_err(|e| format!("GLSL ES 310: {e}"))?;
    }
    Ok(())
}

#[test]
fn every_generated_shader_translates_to_every_backend() {
    let shaders = shader_sources();
    let failures: Vec<String> = shaders
        .iter()
        .filter_map(|(name, source)| {
            translate(name, source)
                .err()
                .map(|e| format!("{name}: {e}"))
        })
        .collect();
    println!("{} shader variants checked", shaders.len());
    assert!(
        failures.is_empty(),
        "{} of {} shaders failed:\n{}",
        failures.len(),
        shaders.len(),
        failures.join("\n")
    );
    // Every activation's formula and derivative is in there, and both softmax passes and the
    // training kernels: the enumeration is not trivially short.
    assert!(shaders.len() > 1000, "only {} shaders", shaders.len());
    for name in ["SoftmaxRows { log: true }", "Train(SparseCrossentropy)"] {
        assert!(shaders.iter().any(|(n, _)| n == name), "{name} missing");
    }
    // The 16-bit weight loaders (shaders/load_b_half.wgsl), each widening in every GEMM body.
    for format in ["Bf16", "F16"] {
        let key = format!("b_format: {format} }}");
        let bodies: std::collections::HashSet<_> = shaders
            .iter()
            .filter(|(n, _)| n.contains(&key))
            .map(|(n, _)| n.split(", act").next())
            .collect();
        assert_eq!(bodies.len(), 6, "{format} weights: GEMM bodies {bodies:?}");
    }
}
