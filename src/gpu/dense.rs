//! Execution: the GEMM variants, their choice per adapter and shape, the pipeline cache, and the
//! public operations (dense forward, with f32 or 16-bit weights, GEMM with transposes, the
//! derivative-gated GEMM of the backward pass). Every operation only records and submits work;
//! nothing waits for the GPU until a download.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use super::context::{AdapterClass, Context};
use super::matrix::{GpuMatrix, GpuRef};
use super::shader::{Body, GemmShader, softmax_rows_source};
use super::train::{TRAIN_BINDINGS, TrainKernel};
use super::weights::GpuWeights;
use super::{Gpu, Pending};
use crate::activation::Activation;
use crate::cpu::WeightFormat;
use crate::error::{Error, Result};

/// A GEMM shader variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GemmKernel {
    /// Register blocking only (no workgroup memory): fastest on CPU-backed adapters.
    Register,
    /// Workgroup-memory tiling plus register blocking: for hardware GPUs.
    Tiled,
    /// Few rows (batch ≤ 8): columns across invocations, k split within a workgroup.
    SmallM,
}

impl GemmKernel {
    /// Every variant.
    pub const ALL: [GemmKernel; 3] = [Self::Register, Self::Tiled, Self::SmallM];

    /// The name `DENSECORE_GPU_KERNEL` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Tiled => "tiled",
            Self::SmallM => "small_m",
        }
    }
}

impl fmt::Display for GemmKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GemmKernel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s.trim())
            .ok_or_else(|| Error::InvalidArgument(format!("unknown GPU kernel {s:?}")))
    }
}

/// Largest batch the small-m variant is chosen for by default.
const SMALL_M: usize = 8;

/// Tile shapes per adapter class. CPU: measured on lavapipe (BENCHMARKS.md, "GPU"); GPU: the
/// TF.js/ONNX Runtime recipe (64×64 tiles, 4×4 per invocation, BK = 16), measured on an H200
/// (BENCHMARKS.md: BK = 64 was no faster on small batches and half as fast from 1024² up).
#[derive(Clone, Copy, Debug)]
struct Tiles {
    register: Body,
    tiled: Body,
    small_m: Body,
    /// The variant for m > SMALL_M.
    large: GemmKernel,
}

const CPU_TILES: Tiles = Tiles {
    register: Body::Register {
        tm: 8,
        wg_x: 16,
        wg_y: 4,
    },
    tiled: Body::Tiled {
        tm: 4,
        wg_x: 8,
        wg_y: 8,
        bk: 16,
    },
    small_m: Body::SmallM {
        mr: 8,
        quads: 64,
        ksplit: 1,
    },
    large: GemmKernel::Register,
};

const GPU_TILES: Tiles = Tiles {
    register: Body::Register {
        tm: 4,
        wg_x: 16,
        wg_y: 16,
    },
    tiled: Body::Tiled {
        tm: 4,
        wg_x: 16,
        wg_y: 16,
        bk: 16,
    },
    small_m: Body::SmallM {
        mr: 8,
        quads: 8,
        ksplit: 8,
    },
    large: GemmKernel::Tiled,
};

impl Body {
    /// (invocations per workgroup, bytes of workgroup memory).
    fn footprint(self) -> (u32, u32) {
        match self {
            Body::Register { wg_x, wg_y, .. } => (wg_x * wg_y, 0),
            Body::Tiled { tm, wg_x, wg_y, bk } => (wg_x * wg_y, 4 * bk * (wg_y * tm + wg_x * 4)),
            Body::SmallM { mr, quads, ksplit } => (quads * ksplit, 16 * mr * quads * ksplit),
        }
    }

    /// (rows, columns) of C one workgroup covers.
    fn block(self) -> (u32, u32) {
        match self {
            Body::Register { tm, wg_x, wg_y } | Body::Tiled { tm, wg_x, wg_y, .. } => {
                (tm * wg_y, 4 * wg_x)
            }
            Body::SmallM { mr, quads, .. } => (mr, 4 * quads),
        }
    }
}

impl Tiles {
    fn for_adapter(class: AdapterClass, limits: &wgpu::Limits) -> Self {
        let fits = |t: &Tiles| {
            [t.register, t.tiled, t.small_m].iter().all(|b| {
                let (threads, shared) = b.footprint();
                threads <= limits.max_compute_invocations_per_workgroup
                    && shared <= limits.max_compute_workgroup_storage_size
            })
        };
        match class {
            AdapterClass::Gpu if fits(&GPU_TILES) => GPU_TILES,
            // Small adapters (and CPU rasterizers) get the 64-invocation shapes.
            AdapterClass::Gpu => Tiles {
                large: GemmKernel::Tiled,
                ..CPU_TILES
            },
            AdapterClass::Cpu => CPU_TILES,
        }
    }

    fn body(&self, kernel: GemmKernel) -> Body {
        match kernel {
            GemmKernel::Register => self.register,
            GemmKernel::Tiled => self.tiled,
            GemmKernel::SmallM => self.small_m,
        }
    }
}

/// Which compiled shader: the pipeline cache key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum PipelineKey {
    Gemm(GemmShader),
    SoftmaxRows { log: bool },
    Train(TrainKernel),
}

impl PipelineKey {
    /// The WGSL the key compiles.
    fn source(self) -> String {
        match self {
            PipelineKey::Gemm(shader) => shader.source(),
            PipelineKey::SoftmaxRows { log } => softmax_rows_source(log),
            PipelineKey::Train(kernel) => kernel.source(),
        }
    }

    /// Every key an operation can ask for, with the bodies of both tile tables (parametric
    /// activations at their defaults and at the settings of [`Activation::PARAMETRIC`]).
    fn all() -> Vec<PipelineKey> {
        let mut keys = Vec::new();
        let activations = || Activation::ALL.into_iter().chain(Activation::PARAMETRIC);
        let elementwise = || activations().filter(|a| !a.is_row_wise());
        // (act, gate, bias, store_z): dense and dense_train, then gemm_act_grad (gemm is
        // dense's linear case).
        let mut epilogues = Vec::new();
        for act in activations() {
            for (bias, store_z) in [(false, false), (false, true), (true, false), (true, true)] {
                epilogues.push((act, None, bias, store_z));
            }
        }
        epilogues.extend(elementwise().map(|g| (Activation::Linear, Some(g), false, false)));
        // A transposed operand is never read as vec4 (`GpuRef::vec4`).
        let operand = [(false, false), (false, true), (true, false)];
        // 16-bit B: weights (`GpuWeights`), row-major, for `Gpu::dense_weights` alone.
        let operand_b: Vec<_> = operand
            .map(|(trans, vec4)| (trans, vec4, WeightFormat::F32))
            .into_iter()
            .chain([WeightFormat::Bf16, WeightFormat::F16].map(|f| (false, false, f)))
            .collect();
        for tiles in [CPU_TILES, GPU_TILES] {
            for body in [tiles.register, tiles.tiled, tiles.small_m] {
                for &(act, gate, bias, store_z) in &epilogues {
                    for (trans_a, vec4_a) in operand {
                        for &(trans_b, vec4_b, b_format) in &operand_b {
                            if b_format != WeightFormat::F32 && (gate.is_some() || store_z) {
                                continue;
                            }
                            keys.push(PipelineKey::Gemm(GemmShader {
                                body,
                                act,
                                gate,
                                bias,
                                store_z,
                                trans_a,
                                trans_b,
                                vec4_a,
                                vec4_b,
                                b_format,
                            }));
                        }
                    }
                }
            }
        }
        keys.extend([false, true].map(|log| PipelineKey::SoftmaxRows { log }));
        keys.extend(TrainKernel::ALL.map(PipelineKey::Train));
        keys
    }
}

/// Every distinct WGSL source the backend can compile, named by its pipeline key
/// (see [`crate::gpu::shader_sources`]).
pub(crate) fn shader_sources() -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    PipelineKey::all()
        .into_iter()
        .map(|key| (format!("{key:?}"), key.source()))
        // Row-wise activations compile to the linear epilogue (a row pass follows).
        .filter(|(_, source)| seen.insert(source.clone()))
        .collect()
}

/// `Params` in `shaders/gemm_common.wgsl` (padded to 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GemmParams {
    m: u32,
    k: u32,
    n: u32,
    alpha: f32,
    beta: f32,
    pad: [u32; 3],
}

/// `Rows` in `shaders/softmax_rows.wgsl` (padded to a ring slot's 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RowParams {
    rows: u32,
    cols: u32,
    pad: [u32; 6],
}

/// Compiled pipelines and the layouts they share, for one device.
pub(crate) struct Kernels {
    tiles: Tiles,
    gemm_layout: wgpu::BindGroupLayout,
    gemm_pipeline_layout: wgpu::PipelineLayout,
    rows_layout: wgpu::BindGroupLayout,
    rows_pipeline_layout: wgpu::PipelineLayout,
    /// The training kernels (`shaders/train_*.wgsl`): params, then read-write storage buffers.
    train_layout: wgpu::BindGroupLayout,
    train_pipeline_layout: wgpu::PipelineLayout,
    /// Bound where a training kernel uses fewer buffers (one each: written bindings must not
    /// share a buffer).
    train_placeholders: [wgpu::Buffer; TRAIN_BINDINGS],
    /// Bound where an operation has no bias or no gate.
    placeholder: wgpu::Buffer,
    /// Bound where an operation stores no Z (a written binding must not share a buffer).
    placeholder_out: wgpu::Buffer,
    cache: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

/// Every kernel's parameters: one slot of the [`ParamsRing`], picked by a dynamic offset.
fn uniform_entry(binding: u32) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: wgpu::BufferSize::new(PARAMS_BYTES),
        },
        count: None,
    }
}

/// Bytes of one kernel's parameters (the largest uniform struct of the shaders).
const PARAMS_BYTES: u64 = 32;

/// Parameter slots in a [`ParamsRing`]: more than the passes of one submission.
pub(crate) const PARAMS_SLOTS: usize = 256;

/// One uniform buffer for every kernel's parameters: a submission's kernels take consecutive
/// slots, written with one queue write just before it, so no kernel call creates a buffer.
pub(crate) struct ParamsRing {
    buffer: wgpu::Buffer,
    /// Bytes between slots (the adapter's uniform offset alignment).
    stride: usize,
}

impl ParamsRing {
    pub(crate) fn new(ctx: &Context) -> Self {
        let stride =
            (ctx.limits().min_uniform_buffer_offset_alignment as usize).max(PARAMS_BYTES as usize);
        let buffer = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernel params"),
            size: (PARAMS_SLOTS * stride) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self { buffer, stride }
    }
}

/// Which bind group layout a dispatch uses.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Layout {
    Gemm,
    Rows,
    Train,
}

/// Storage buffers bound after the parameters, at most (the GEMM's six).
const MAX_STORAGE: usize = 6;

/// A bind group's identity: its layout and its storage buffers in binding order.
pub(crate) type BindKey = (Layout, [Option<wgpu::Buffer>; MAX_STORAGE]);

impl Kernels {
    pub(crate) fn new(ctx: &Context) -> Result<Self> {
        let device = ctx.device();
        ctx.scoped(|| {
            // 0 params, 1 A, 2 B, 3 bias, 4 gate (Z read), 5 C, 6 Z (written).
            let gemm_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("gemm"),
                entries: &[
                    uniform_entry(0),
                    storage_entry(1, true),
                    storage_entry(2, true),
                    storage_entry(3, true),
                    storage_entry(4, true),
                    storage_entry(5, false),
                    storage_entry(6, false),
                ],
            });
            let rows_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("softmax_rows"),
                entries: &[uniform_entry(0), storage_entry(1, false)],
            });
            let train_entries: Vec<_> = std::iter::once(uniform_entry(0))
                .chain((1..=TRAIN_BINDINGS as u32).map(|b| storage_entry(b, false)))
                .collect();
            let train_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("train"),
                entries: &train_entries,
            });
            let placeholder = |label| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: 16,
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                })
            };
            let pipeline_layout = |layout| {
                device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: None,
                    bind_group_layouts: &[Some(layout)],
                    immediate_size: 0,
                })
            };
            Self {
                tiles: Tiles::for_adapter(ctx.adapter().class, ctx.limits()),
                gemm_pipeline_layout: pipeline_layout(&gemm_layout),
                rows_pipeline_layout: pipeline_layout(&rows_layout),
                train_pipeline_layout: pipeline_layout(&train_layout),
                gemm_layout,
                rows_layout,
                train_layout,
                train_placeholders: std::array::from_fn(|_| placeholder("train placeholder")),
                placeholder: placeholder("placeholder"),
                placeholder_out: placeholder("placeholder_out"),
                cache: Mutex::new(HashMap::new()),
            }
        })
    }

    /// Switches to the tile table for `class` (compiled pipelines keep their own shapes).
    pub(crate) fn set_tiles(&mut self, class: AdapterClass, limits: &wgpu::Limits) {
        self.tiles = Tiles::for_adapter(class, limits);
    }

    /// The compiled pipeline for `key`, compiling it on first use.
    fn pipeline(&self, ctx: &Context, key: PipelineKey) -> wgpu::ComputePipeline {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .entry(key)
            .or_insert_with(|| {
                let layout = match key {
                    PipelineKey::Gemm(_) => &self.gemm_pipeline_layout,
                    PipelineKey::SoftmaxRows { .. } => &self.rows_pipeline_layout,
                    PipelineKey::Train(_) => &self.train_pipeline_layout,
                };
                let module = ctx
                    .device()
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: None,
                        source: wgpu::ShaderSource::Wgsl(key.source().into()),
                    });
                ctx.device()
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: None,
                        layout: Some(layout),
                        module: &module,
                        entry_point: Some("main"),
                        compilation_options: Default::default(),
                        cache: None,
                    })
            })
            .clone()
    }
}

/// One compute dispatch, ready to record.
pub(crate) struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    params: [u32; 8],
    groups: (u32, u32, u32),
}

/// The B operand as the GEMM reads it: an f32 matrix (possibly transposed) or 16-bit weights.
#[derive(Clone, Copy)]
pub(crate) struct OperandB<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub rows: usize,
    pub cols: usize,
    pub transposed: bool,
    pub vec4: bool,
    pub format: WeightFormat,
}

impl<'a> From<GpuRef<'a>> for OperandB<'a> {
    fn from(b: GpuRef<'a>) -> Self {
        Self {
            buffer: b.matrix.buffer(),
            rows: b.rows(),
            cols: b.cols(),
            transposed: b.transposed,
            vec4: b.vec4(),
            format: WeightFormat::F32,
        }
    }
}

/// What the store step does besides `alpha·A·B`.
struct Epilogue<'a> {
    beta: f32,
    bias: Option<&'a GpuMatrix>,
    act: Activation,
    /// Multiply by `act'(z)` for this activation and Z.
    gate: Option<(&'a GpuMatrix, Activation)>,
    /// Store the pre-activation here.
    z_out: Option<&'a GpuMatrix>,
}

fn expect_shape(
    operand: &'static str,
    (rows, cols): (usize, usize),
    (expected_rows, expected_cols): (usize, usize),
) -> Result<()> {
    if (rows, cols) == (expected_rows, expected_cols) {
        Ok(())
    } else {
        Err(Error::Shape {
            operand,
            expected_rows,
            expected_cols,
            rows,
            cols,
        })
    }
}

fn workgroups(ctx: &Context, count: usize, what: &'static str) -> Result<u32> {
    let limit = ctx.limits().max_compute_workgroups_per_dimension;
    if count > limit as usize {
        return Err(Error::GpuTooLarge {
            operand: "c",
            what,
            size: count as u64,
            limit: limit as u64,
        });
    }
    Ok(count as u32)
}

impl Gpu {
    /// `y = act(x·w + bias)` on device matrices: `x` m×k, `w` k×n, `bias` 1×n, `y` m×n.
    /// Bias and activation are applied as each output is stored; softmax and log_softmax run as
    /// a row pass right after, in the same submission. Nothing is read back.
    pub fn dense(
        &self,
        x: GpuRef<'_>,
        w: GpuRef<'_>,
        bias: Option<&GpuMatrix>,
        act: Activation,
        y: &mut GpuMatrix,
    ) -> Result<()> {
        let epilogue = Epilogue {
            beta: 0.0,
            bias,
            act,
            gate: None,
            z_out: None,
        };
        self.run_gemm(1.0, x, w.into(), epilogue, y)
    }

    /// [`Gpu::dense`] with weights stored by [`Gpu::upload_weights_as`] (or
    /// [`Gpu::upload_weights_bf16`], [`Gpu::upload_weights_f16`]): 16-bit weights are widened to
    /// f32 as the shader loads them (half the bytes of f32 to read), x, y, the bias and every
    /// sum stay f32, and the epilogue is the same. Every GEMM variant reads them.
    pub fn dense_weights(
        &self,
        x: GpuRef<'_>,
        w: &GpuWeights,
        bias: Option<&GpuMatrix>,
        act: Activation,
        y: &mut GpuMatrix,
    ) -> Result<()> {
        let epilogue = Epilogue {
            beta: 0.0,
            bias,
            act,
            gate: None,
            z_out: None,
        };
        self.run_gemm(1.0, x, w.operand(), epilogue, y)
    }

    /// The training forward pass: `z = x·w + bias` and `y = act(z)`, both stored by the same
    /// fused epilogue (the backward pass needs `z` for the activation's derivative).
    pub fn dense_train(
        &self,
        x: GpuRef<'_>,
        w: GpuRef<'_>,
        bias: Option<&GpuMatrix>,
        act: Activation,
        z: &mut GpuMatrix,
        y: &mut GpuMatrix,
    ) -> Result<()> {
        let epilogue = Epilogue {
            beta: 0.0,
            bias,
            act,
            gate: None,
            z_out: Some(z),
        };
        self.run_gemm(1.0, x, w.into(), epilogue, y)
    }

    /// `c = alpha·a·b + beta·c` on device matrices; `beta = 0` never reads `c`. Transposed views
    /// (`x.t()`) give the backward products `xᵀ·dY` and `dY·Wᵀ` without copies, and
    /// `gemm(-lr, x.t(), dy, 1.0, w)` is a fused SGD step.
    pub fn gemm(
        &self,
        alpha: f32,
        a: GpuRef<'_>,
        b: GpuRef<'_>,
        beta: f32,
        c: &mut GpuMatrix,
    ) -> Result<()> {
        let epilogue = Epilogue {
            beta,
            bias: None,
            act: Activation::Linear,
            gate: None,
            z_out: None,
        };
        self.run_gemm(alpha, a, b.into(), epilogue, c)
    }

    /// The backward pass through an activation, fused into its GEMM: `c = (a·b) ⊙ act'(z)`
    /// elementwise, e.g. `dZ = (dY·Wᵀ) ⊙ act'(Z)` with `z` the layer's pre-activation (m×n like
    /// `c`). Row-wise activations (softmax) have no elementwise derivative and are refused.
    pub fn gemm_act_grad(
        &self,
        a: GpuRef<'_>,
        b: GpuRef<'_>,
        z: &GpuMatrix,
        act: Activation,
        c: &mut GpuMatrix,
    ) -> Result<()> {
        if act.is_row_wise() {
            return Err(Error::InvalidArgument(format!(
                "{act} has no elementwise derivative to fuse"
            )));
        }
        let epilogue = Epilogue {
            beta: 0.0,
            bias: None,
            act: Activation::Linear,
            gate: Some((z, act)),
            z_out: None,
        };
        self.run_gemm(1.0, a, b.into(), epilogue, c)
    }

    /// The variant an m-row product runs with: the forced one, else by adapter class and m.
    pub fn kernel(&self, m: usize) -> GemmKernel {
        self.forced.unwrap_or(if m <= SMALL_M {
            GemmKernel::SmallM
        } else {
            self.kernels.tiles.large
        })
    }

    fn run_gemm(
        &self,
        alpha: f32,
        a: GpuRef<'_>,
        b: OperandB<'_>,
        ep: Epilogue<'_>,
        c: &mut GpuMatrix,
    ) -> Result<()> {
        let (m, k, n) = (a.rows(), a.cols(), b.cols);
        expect_shape("b", (b.rows, b.cols), (k, n))?;
        expect_shape("c", (c.rows(), c.cols()), (m, n))?;
        if let Some(bias) = ep.bias {
            expect_shape("bias", (bias.rows(), bias.cols()), (1, n))?;
        }
        for z in ep.gate.map(|(z, _)| z).into_iter().chain(ep.z_out) {
            expect_shape("z", (z.rows(), z.cols()), (m, n))?;
        }
        if !(alpha.is_finite() && ep.beta.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "alpha = {alpha} and beta = {} must be finite",
                ep.beta
            )));
        }
        if m == 0 || n == 0 {
            return Ok(());
        }
        let ctx = &self.ctx;
        let body = self.kernels.tiles.body(self.kernel(m));
        let (block_rows, block_cols) = body.block();
        let groups = (
            workgroups(ctx, n.div_ceil(block_cols as usize), "column blocks")?,
            workgroups(ctx, m.div_ceil(block_rows as usize), "row blocks")?,
            1,
        );
        let shader = GemmShader {
            body,
            act: ep.act,
            gate: ep.gate.map(|(_, act)| act),
            bias: ep.bias.is_some(),
            store_z: ep.z_out.is_some(),
            trans_a: a.transposed,
            trans_b: b.transposed,
            vec4_a: a.vec4(),
            vec4_b: b.vec4,
            b_format: b.format,
        };
        let params = GemmParams {
            m: m as u32,
            k: k as u32,
            n: n as u32,
            alpha,
            beta: ep.beta,
            pad: [0; 3],
        };
        let placeholder = &self.kernels.placeholder;
        ctx.scoped(|| {
            let bind_group = self.bind_group(
                Layout::Gemm,
                &[
                    a.matrix.buffer(),
                    b.buffer,
                    ep.bias.map_or(placeholder, GpuMatrix::buffer),
                    ep.gate.map_or(placeholder, |(z, _)| z.buffer()),
                    c.buffer(),
                    ep.z_out
                        .map_or(&self.kernels.placeholder_out, GpuMatrix::buffer),
                ],
            );
            let gemm = Dispatch {
                pipeline: self.kernels.pipeline(ctx, PipelineKey::Gemm(shader)),
                bind_group,
                params: bytemuck::cast(params),
                groups,
            };
            let rows = match ep.act.is_row_wise() {
                true => Some(self.softmax_rows(ep.act, c)?),
                false => None,
            };
            self.submit(gemm, rows);
            Ok(())
        })?
    }

    /// The softmax/log_softmax row pass over `y`.
    fn softmax_rows(&self, act: Activation, y: &GpuMatrix) -> Result<Dispatch> {
        let ctx = &self.ctx;
        let limit = ctx.limits().max_compute_workgroups_per_dimension as usize;
        let x_groups = y.rows().min(limit);
        let y_groups = workgroups(ctx, y.rows().div_ceil(x_groups), "row blocks")?;
        let params = RowParams {
            rows: y.rows() as u32,
            cols: y.cols() as u32,
            pad: [0; 6],
        };
        let key = PipelineKey::SoftmaxRows {
            log: act == Activation::LogSoftmax,
        };
        Ok(Dispatch {
            pipeline: self.kernels.pipeline(ctx, key),
            bind_group: self.bind_group(Layout::Rows, &[y.buffer()]),
            params: bytemuck::cast(params),
            groups: (x_groups as u32, y_groups, 1),
        })
    }

    /// A training kernel's dispatch: `params` (32 bytes) and up to [`TRAIN_BINDINGS`] buffers
    /// in binding order, placeholders for the missing ones.
    pub(crate) fn train_dispatch(
        &self,
        kernel: TrainKernel,
        params: &[u32; 8],
        buffers: &[Option<&wgpu::Buffer>],
        groups: u32,
    ) -> Result<()> {
        let ctx = &self.ctx;
        ctx.scoped(|| {
            let storage: [&wgpu::Buffer; TRAIN_BINDINGS] = std::array::from_fn(|i| {
                buffers
                    .get(i)
                    .copied()
                    .flatten()
                    .unwrap_or(&self.kernels.train_placeholders[i])
            });
            let dispatch = Dispatch {
                pipeline: self.kernels.pipeline(ctx, PipelineKey::Train(kernel)),
                bind_group: self.bind_group(Layout::Train, &storage),
                params: *params,
                groups: (groups, 1, 1),
            };
            self.submit(dispatch, None);
        })
    }

    /// Records the dispatches, one compute pass each (timed when a timer runs), and submits
    /// them, or with [`Gpu::batched`] adds them to the pending command buffer.
    fn submit(&self, first: Dispatch, second: Option<Dispatch>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let Pending {
            encoder,
            passes,
            params,
        } = &mut *pending;
        let encoder = encoder.get_or_insert_with(|| {
            self.ctx
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default())
        });
        let stride = self.params.stride;
        for d in std::iter::once(first).chain(second) {
            // `batched` keeps a submission's passes below the ring's slots.
            debug_assert!(*passes < PARAMS_SLOTS);
            let offset = *passes * stride;
            params.resize(offset + stride, 0);
            params[offset..offset + PARAMS_BYTES as usize]
                .copy_from_slice(bytemuck::bytes_of(&d.params));
            *passes += 1;
            let timestamps = self.next_timestamps();
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: timestamps.as_ref().map(|(set, begin)| {
                    wgpu::ComputePassTimestampWrites {
                        query_set: set,
                        beginning_of_pass_write_index: Some(*begin),
                        end_of_pass_write_index: Some(begin + 1),
                    }
                }),
            });
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[offset as u32]);
            pass.dispatch_workgroups(d.groups.0, d.groups.1, d.groups.2);
        }
        if self.batch_passes.is_none_or(|limit| *passes >= limit) {
            self.submit_pending(&mut pending);
        }
    }

    /// Submits the pending command buffer, if any, after writing its kernels' parameters.
    pub(crate) fn submit_pending(&self, pending: &mut Pending) {
        if let Some(encoder) = pending.encoder.take() {
            let queue = self.ctx.queue();
            // Queue writes land before the next submission, and after the ones before it.
            queue.write_buffer(&self.params.buffer, 0, &pending.params);
            queue.submit([encoder.finish()]);
        }
        pending.passes = 0;
        pending.params.clear();
    }

    /// The bind group of `layout` over the parameter ring and `storage`. While batched
    /// (training), bind groups are kept by their buffers until the next flush, so the steps
    /// between two reads create none; otherwise each call makes its own.
    fn bind_group(&self, layout: Layout, storage: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let make = || {
            let device = self.ctx.device();
            let params = wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &self.params.buffer,
                    offset: 0,
                    size: wgpu::BufferSize::new(PARAMS_BYTES),
                }),
            };
            let entries: [wgpu::BindGroupEntry<'_>; MAX_STORAGE + 1] =
                std::array::from_fn(|i| match i.checked_sub(1).and_then(|j| storage.get(j)) {
                    Some(b) => wgpu::BindGroupEntry {
                        binding: i as u32,
                        resource: b.as_entire_binding(),
                    },
                    None => params.clone(),
                });
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: match layout {
                    Layout::Gemm => &self.kernels.gemm_layout,
                    Layout::Rows => &self.kernels.rows_layout,
                    Layout::Train => &self.kernels.train_layout,
                },
                entries: &entries[..=storage.len()],
            })
        };
        if self.batch_passes.is_none() {
            return make();
        }
        let key: BindKey = (
            layout,
            std::array::from_fn(|i| storage.get(i).map(|b| (*b).clone())),
        );
        let mut cache = self
            .bind_groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cache.entry(key).or_insert_with(make).clone()
    }
}
