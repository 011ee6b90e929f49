//! SVG plots of simulation timelines.

use std::path::Path;

use gossip_sim::Figures;
use plotters::prelude::*;

/// Plots the fraction of nodes at the scenario's goal over virtual time.
/// plotters' errors carry a backend's error type: kept as their message.
pub(crate) fn converged_fraction(path: &Path, fig: &Figures) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("{e}");
    let end = fig
        .timeline
        .last()
        .map_or(1.0, |(t, _)| t.max(f64::EPSILON));
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!(
        "{}: {} nodes, seed {}, loss {}",
        fig.scenario, fig.nodes, fig.seed, fig.loss
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..end, 0.0..1.05)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("virtual seconds since the measured phase began")
        .y_desc("fraction of nodes at the goal")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(fig.timeline.iter().copied(), &BLUE))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
