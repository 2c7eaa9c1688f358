//! The extraction of the two-view methods that compare one vector per view
//! (SimCLR, YADIM): the pooled last map, through a projection head or not.

use crate::{ProjectionHead, ProjectionHeadConfig};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use cssl_core::FeatureMaps;

/// How a view's feature maps become the vector that gets compared.
#[derive(Config, Debug)]
pub enum PairExtractionConfig {
    /// Global-average-pool the last map, then a projection head (SimCLR:
    /// "a small neural network projection head g(·) that maps
    /// representations to the space where contrastive loss is applied").
    Projection(ProjectionHeadConfig),
    /// The last map alone, averaged over its locations, no head (YADIM:
    /// "compare the last feature maps only").
    LastMap,
}

impl PairExtractionConfig {
    /// Width of the compared vectors for an encoder of `encoder_dim` output
    /// channels.
    pub fn output_dim(&self, encoder_dim: usize) -> usize {
        match self {
            Self::Projection(head) => head.output_dim,
            Self::LastMap => encoder_dim,
        }
    }

    /// Checks that the head reads an encoder of `encoder_dim` channels.
    pub fn validate(&self, encoder_dim: usize) -> cssl_core::Result<()> {
        if let Self::Projection(head) = self {
            head.validate("extraction.Projection")?;
        }
        match self {
            Self::Projection(head) if head.input_dim != encoder_dim => {
                Err(cssl_core::CsslError::Shape {
                    what:
                        "extraction.Projection.input_dim (must equal the encoder's output channels)"
                            .into(),
                    expected: encoder_dim.to_string(),
                    got: head.input_dim.to_string(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Builds the extraction.
    pub fn init<B: Backend>(&self, device: &B::Device) -> PairExtraction<B> {
        PairExtraction {
            head: match self {
                Self::Projection(head) => Some(head.init(device)),
                Self::LastMap => None,
            },
        }
    }
}

/// See [`PairExtractionConfig`].
#[derive(Module, Debug)]
pub struct PairExtraction<B: Backend> {
    head: Option<ProjectionHead<B>>,
}

impl<B: Backend> PairExtraction<B> {
    /// # Shapes
    /// Last map `[n, c, h, w]` -> `[n, output_dim]`.
    pub fn forward(&self, maps: &FeatureMaps<B>) -> Tensor<B, 2> {
        let pooled = maps.pooled();
        match &self.head {
            Some(head) => head.forward(pooled),
            None => pooled,
        }
    }
}
