//! A COCO-format split as a Burn [`Dataset`] of decoded, transformed and normalised samples.
//!
//! Randomness is seeded: the transform of item `i` in epoch `e` draws from a generator seeded
//! by `(seed, e, i)`, so a sample is the same whichever worker loads it and in whatever order.

use crate::batcher::DetrItem;
use crate::coco::{CocoAnnotation, CocoCategory, CocoFile};
use crate::error::{DatasetError, Result};
use crate::layout::{Layout, SplitPaths};
use crate::rng::SeedRng;
use crate::target::{prepare_target, DroppedBoxes};
use crate::transforms::{Pipeline, Sample};
use crate::validate::{check_image_file, validate_structure, ImageCheck};
use burn::data::dataset::Dataset;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Options of [`CocoSplit::open`].
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// How much of each image file to check when opening (default: that it exists).
    pub image_check: ImageCheck,
    /// Leave out images that have no annotation (the original keeps them).
    pub skip_images_without_annotations: bool,
    /// Seed of the transforms' random numbers.
    pub seed: u64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            image_check: ImageCheck::Exists,
            skip_images_without_annotations: false,
            seed: 0,
        }
    }
}

/// One image of the split with its annotations.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    /// COCO image id.
    pub id: u64,
    /// Path of the image file.
    pub path: PathBuf,
    /// Width and height from the JSON.
    pub json_size: (f64, f64),
    /// Its valid annotations (crowd included; targets drop them).
    pub annotations: Vec<CocoAnnotation>,
}

/// One split of a COCO-format detection dataset (torchvision's `CocoDetection`): decodes an
/// image, prepares its target, applies a [`Pipeline`].
#[derive(Debug, Clone)]
pub struct CocoSplit {
    paths: SplitPaths,
    records: Vec<ImageRecord>,
    categories: Vec<CocoCategory>,
    pipeline: Pipeline,
    seed: u64,
}

impl CocoSplit {
    /// Opens `split` of the dataset at `root` (`layout` `None` detects it).
    pub fn open_split(
        root: impl AsRef<Path>,
        split: &str,
        layout: Option<Layout>,
        pipeline: Pipeline,
        options: &OpenOptions,
    ) -> Result<Self> {
        let paths = SplitPaths::resolve(root, split, layout)?;
        Self::open(&paths, pipeline, options)
    }

    /// Reads the annotation file and validates it; the first problem is returned as an error.
    pub fn open(paths: &SplitPaths, pipeline: Pipeline, options: &OpenOptions) -> Result<Self> {
        let coco = CocoFile::load(&paths.annotation_file)?;
        Self::from_coco(coco, paths, pipeline, options)
    }

    /// Builds the dataset from a parsed file (validated like [`CocoSplit::open`]).
    pub fn from_coco(
        coco: CocoFile,
        paths: &SplitPaths,
        pipeline: Pipeline,
        options: &OpenOptions,
    ) -> Result<Self> {
        pipeline.transform.validate()?;
        let (errors, index) = validate_structure(&coco, &paths.annotation_file);
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        coco.images.par_iter().try_for_each(|img| {
            check_image_file(
                &paths.images_dir.join(&img.file_name),
                &paths.annotation_file,
                img.id,
                &img.file_name,
                options.image_check,
            )
            .map(|_| ())
        })?;
        let CocoFile {
            images,
            annotations,
            categories,
        } = coco;
        let mut records = Vec::with_capacity(images.len());
        for (img, anns) in images.into_iter().zip(index.by_image) {
            if options.skip_images_without_annotations && anns.is_empty() {
                continue;
            }
            records.push(ImageRecord {
                id: img.id,
                path: paths.images_dir.join(&img.file_name),
                json_size: (img.width, img.height),
                annotations: anns.into_iter().map(|k| annotations[k].clone()).collect(),
            });
        }
        Ok(Self {
            paths: paths.clone(),
            records,
            categories,
            pipeline,
            seed: options.seed,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The split's paths.
    pub fn paths(&self) -> &SplitPaths {
        &self.paths
    }

    /// The images, in file order.
    pub fn records(&self) -> &[ImageRecord] {
        &self.records
    }

    /// The categories of the file.
    pub fn categories(&self) -> &[CocoCategory] {
        &self.categories
    }

    /// DETR's `num_classes`: largest category id + 1.
    pub fn num_classes(&self) -> usize {
        self.categories
            .iter()
            .map(|c| c.id as usize + 1)
            .max()
            .unwrap_or(0)
    }

    /// The transform pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Replaces the pipeline (e.g. the training split with validation transforms).
    pub fn with_pipeline(mut self, pipeline: Pipeline) -> Result<Self> {
        pipeline.transform.validate()?;
        self.pipeline = pipeline;
        Ok(self)
    }

    /// The transforms' seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Changes the transforms' seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Decodes image `index` and prepares its target, before any transform. Also returns how
    /// many boxes were dropped.
    pub fn decode(&self, index: usize) -> Result<(Sample, DroppedBoxes)> {
        let rec = self.records.get(index).ok_or_else(|| {
            DatasetError::Config(format!(
                "index {index} out of range for {} images of {}",
                self.records.len(),
                self.paths.annotation_file.display()
            ))
        })?;
        let image = decode_rgb(&rec.path, rec.id)?;
        let anns: Vec<&CocoAnnotation> = rec.annotations.iter().collect();
        let (target, dropped) = prepare_target(
            rec.id,
            &anns,
            image.width() as usize,
            image.height() as usize,
        );
        Ok((Sample { image, target }, dropped))
    }

    /// Loads item `index` as seen in `epoch`: decoded, transformed and normalised.
    pub fn load(&self, index: usize, epoch: u64) -> Result<DetrItem> {
        let (sample, _) = self.decode(index)?;
        let mut rng = SeedRng::from_parts(&[self.seed, epoch, index as u64]);
        Ok(self.pipeline.apply(sample, &mut rng))
    }
}

/// Decodes an image file to 8-bit RGB (like PIL's `convert("RGB")`; EXIF orientation is not
/// applied, as in the original).
pub fn decode_rgb(path: &Path, image_id: u64) -> Result<image::RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    Ok(decode_bytes(path, image_id, &bytes)?.into_rgb8())
}

/// Decodes the bytes of the image file `path`, rejecting what the decoder would silently
/// patch up: a JPEG cut before its end-of-image marker (decoded with its missing part grey).
pub fn decode_bytes(path: &Path, image_id: u64, bytes: &[u8]) -> Result<image::DynamicImage> {
    let decode_err = |message: String| DatasetError::ImageDecode {
        path: path.to_path_buf(),
        image_id,
        message,
    };
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DatasetError::io(path, e))?;
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        crate::jpeg::check_complete(bytes).map_err(decode_err)?;
    }
    reader.decode().map_err(|e| decode_err(e.to_string()))
}

/// Source of items for [`crate::loader::DetrDataLoader`]: anything that can load item `index`
/// of epoch `epoch`.
pub trait ItemSource: Send + Sync + 'static {
    /// Number of items.
    fn num_items(&self) -> usize;
    /// Loads one item.
    fn load_item(&self, index: usize, epoch: u64) -> Result<DetrItem>;
}

impl ItemSource for CocoSplit {
    fn num_items(&self) -> usize {
        self.len()
    }
    fn load_item(&self, index: usize, epoch: u64) -> Result<DetrItem> {
        self.load(index, epoch)
    }
}

impl Dataset<DetrItem> for CocoSplit {
    /// Item `index` with the transforms of epoch 0; `None` (with the error logged) when the
    /// image cannot be read.
    fn get(&self, index: usize) -> Option<DetrItem> {
        if index >= self.records.len() {
            return None;
        }
        match self.load(index, 0) {
            Ok(item) => Some(item),
            Err(e) => {
                tracing::error!("{e}");
                None
            }
        }
    }

    fn len(&self) -> usize {
        self.records.len()
    }
}
