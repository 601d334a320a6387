//! A backend that implements only the required operations (as a new GPU backend would start)
//! trains exactly like the CPU: the trait's default loss, activation-gradient, update,
//! regularizer and constraint implementations are right.

use densecore::Activation;
use densecore::Result;
use densecore::cpu::Cpu;
use densecore::nn::backend::{Backend, BufMut, BufRef};
use densecore::nn::{Dense, FitOptions, Regularizer, Sequential, Tensor, Verbose};

/// The CPU's matrix operations behind a buffer type of its own, with every defaulted method
/// left to the trait.
#[derive(Clone, Debug, Default)]
struct Minimal(Cpu);

#[derive(Debug)]
struct Buf(Vec<f32>);

fn r<'a>(v: BufRef<'a, Buf>) -> BufRef<'a, Vec<f32>> {
    BufRef {
        buf: &v.buf.0,
        rows: v.rows,
        cols: v.cols,
        rs: v.rs,
        cs: v.cs,
    }
}

fn w<'a>(v: BufMut<'a, Buf>) -> BufMut<'a, Vec<f32>> {
    BufMut {
        buf: &mut v.buf.0,
        rows: v.rows,
        cols: v.cols,
        rs: v.rs,
        cs: v.cs,
    }
}

impl Backend for Minimal {
    type Buffer = Buf;
    fn describe(&self) -> String {
        "minimal".into()
    }
    fn alloc(&self, len: usize) -> Result<Buf> {
        Ok(Buf(vec![0.0; len]))
    }
    fn write(&self, dst: &mut Buf, src: &[f32]) -> Result<()> {
        self.0.write(&mut dst.0, src)
    }
    fn read(&self, src: &Buf, dst: &mut [f32]) -> Result<()> {
        self.0.read(&src.0, dst)
    }
    fn dense(
        &self,
        x: BufRef<'_, Buf>,
        wt: BufRef<'_, Buf>,
        bias: Option<&Buf>,
        act: Activation,
        y: BufMut<'_, Buf>,
    ) -> Result<()> {
        Backend::dense(&self.0, r(x), r(wt), bias.map(|b| &b.0), act, w(y))
    }
    fn dense_train(
        &self,
        x: BufRef<'_, Buf>,
        wt: BufRef<'_, Buf>,
        bias: Option<&Buf>,
        act: Activation,
        z: BufMut<'_, Buf>,
        y: BufMut<'_, Buf>,
    ) -> Result<()> {
        Backend::dense_train(&self.0, r(x), r(wt), bias.map(|b| &b.0), act, w(z), w(y))
    }
    fn gemm(
        &self,
        alpha: f32,
        a: BufRef<'_, Buf>,
        b: BufRef<'_, Buf>,
        beta: f32,
        c: BufMut<'_, Buf>,
    ) -> Result<()> {
        Backend::gemm(&self.0, alpha, r(a), r(b), beta, w(c))
    }
    fn gemm_act_grad(
        &self,
        a: BufRef<'_, Buf>,
        b: BufRef<'_, Buf>,
        z: BufRef<'_, Buf>,
        act: Activation,
        c: BufMut<'_, Buf>,
    ) -> Result<()> {
        Backend::gemm_act_grad(&self.0, r(a), r(b), r(z), act, w(c))
    }
    fn col_sums(&self, a: BufRef<'_, Buf>, out: &mut Buf) -> Result<()> {
        self.0.col_sums(r(a), &mut out.0)
    }
}

fn build<B: Backend>(backend: B) -> Sequential<B> {
    let mut m = Sequential::with_backend(backend, &[6]).seed(3);
    m.add(
        Dense::new(8)
            .activation("softmax")
            .kernel_regularizer(Regularizer::l2(0.01))
            .activity_regularizer("l1"),
    )
    .unwrap();
    m.add(
        Dense::new(3)
            .activation("sigmoid")
            .kernel_constraint("max_norm")
            .bias_regularizer("l1"),
    )
    .unwrap();
    m.compile("rmsprop", "binary_crossentropy", &[]).unwrap();
    m
}

#[test]
fn defaulted_operations_match_the_cpu() {
    let x = Tensor::new(
        &[40, 6],
        (0..240).map(|i| ((i * 37) % 23) as f32 / 23.0).collect(),
    )
    .unwrap();
    let y = Tensor::new(&[40, 3], (0..120).map(|i| ((i * 7) % 2) as f32).collect()).unwrap();
    let opts = FitOptions {
        epochs: 3,
        batch_size: 8,
        verbose: Verbose::Silent,
        ..FitOptions::default()
    };
    let mut cpu = build(Cpu::default());
    let mut minimal = build(Minimal::default());
    let h1 = cpu.fit(&x, &y, &opts).unwrap();
    let h2 = minimal.fit(&x, &y, &opts).unwrap();
    assert_eq!(h1.metrics, h2.metrics);
    assert_eq!(cpu.get_weights().unwrap(), minimal.get_weights().unwrap());
    assert_eq!(minimal.backend().describe(), "minimal");
    assert!(h1.get("loss").unwrap()[2] < h1.get("loss").unwrap()[0]);
}
