"""Mutation check: does each promise of the project have a test that breaks?

Each `Mutation` below is a small, realistic bug (a changed constant, a dropped
check, an inverted condition, a skipped call) in behaviour the project
promises: the paper's facts, and the failure behaviour docs/failures.md describes.
This script applies them one at a time to a copy of the tree (the files git
tracks, and the new ones it does not ignore), runs the few tests that should catch each, and prints
a table: every mutation must be caught (a test fails), or the script exits 1.

    python -m tests.mutations [--jobs N] [-k SUBSTRING] [--list] [--not-yet-caught]

Before any mutation it runs all the selected mutations' tests on the
unmutated copy: a test that already fails proves nothing. A mutation whose
`old` text no longer occurs exactly once in its file stops the script (exit
2): the list went stale, update it with the code.

New promised behaviour adds its mutation here, next to the test that pins it;
one that no test catches yet goes to NOT_YET_CAUGHT (`--not-yet-caught` runs
those) until its test is written.
A general tool such as mutmut is not used: it would mutate every line and run
the whole suite for each, days on this suite on 2 cores, where this curated
list takes minutes.
"""

import argparse
import concurrent.futures
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 600  # seconds for one pytest run: a mutation that hangs is an error, not a catch


@dataclasses.dataclass(frozen=True)
class Mutation:
    """A bug: `old` (exactly once in `path`) becomes `new`; `tests` catch it."""

    name: str
    path: str  # relative to the repository root
    old: str
    new: str
    tests: tuple[str, ...]  # pytest node ids


M = Mutation
PAPER = "tests/test_paper_facts.py::"
PRETRAINED = "tests/models/test_pretrained.py::"
HOSTILE_PTH = "tests/models/test_hostile_pth.py::"
FOREIGN = "tests/training/test_foreign_model_dir.py::"
HOSTILE_IMAGES = "tests/export/test_hostile_images.py::"
SOLVER = ("tests/training/test_solver_matches_torch.py::"
          "test_the_recipes_training_steps_are_pytorchs_on_the_same_net_and_batches")

MUTATIONS = [
    # ------------------------------------------------------ (a) the paper's facts
    # Blocks: BN after every conv (Caffe's epsilon, PyTorch's momentum), He init, no biases.
    M("BN epsilon 1e-5 -> 1e-3", "keras_resnet/models/blocks.py",
      "BN_EPSILON = 1e-5", "BN_EPSILON = 1e-3",
      (PAPER + "test_every_bn_has_the_papers_epsilon_and_momentum[resnet20]",)),
    M("BN momentum 0.9 -> 0.95", "keras_resnet/models/blocks.py",
      "BN_MOMENTUM = 0.9", "BN_MOMENTUM = 0.95",
      (PAPER + "test_every_bn_has_the_papers_epsilon_and_momentum[resnet20]",)),
    M("conv init he_normal -> glorot_uniform", "keras_resnet/models/blocks.py",
      'kernel_initializer="he_normal"', 'kernel_initializer="glorot_uniform"',
      (PAPER + "test_every_conv_is_bias_free_and_he_initialised[resnet20]",)),
    M("convs before BN get a bias", "keras_resnet/models/blocks.py",
      "            use_bias=False,", "            use_bias=True,",
      (PAPER + "test_every_conv_is_bias_free_and_he_initialised[resnet20]",)),
    M("weight decay: L2 of wd, not wd / 2 (not Caffe's)", "keras_resnet/models/blocks.py",
      "keras.regularizers.L2(self.weight_decay / 2)", "keras.regularizers.L2(self.weight_decay)",
      ("tests/models/test_models.py::test_weight_decay_is_caffe_weight_decay",)),
    # Shortcuts (Sec. 3.3) and where a bottleneck strides (v1 / v1.5).
    M("v1 bottleneck strides on the 3x3 (v1.5's place)", "keras_resnet/models/blocks.py",
      '(strides, 1) if version == "v1" else (1, strides)',
      '(strides, 1) if version == "v1.5" else (1, strides)',
      (PAPER + "test_bottleneck_downsampling_is_on_the_first_1x1_in_v1_and_the_3x3_in_v1_5[v1-strides0]",)),
    M("option B projects every shortcut (as C)", "keras_resnet/models/blocks.py",
      'if self.shortcut == "C" or (self.shortcut == "B" and grows):',
      'if self.shortcut == "C" or self.shortcut == "B":',
      (PAPER + "test_shortcut_options_project_where_the_paper_says[resnet34-None-3]",)),
    M("CIFAR nets default to option B, not A", "keras_resnet/models/variants.py",
      '        shortcut="A",', '        shortcut="B",',
      (PAPER + "test_shortcut_options_project_where_the_paper_says[resnet20-None-0]",)),
    M("option A pads channels on both sides", "keras_resnet/models/layers.py",
      "paddings[axis] = [0, extra]", "paddings[axis] = [extra // 2, extra - extra // 2]",
      ("tests/models/test_models.py::test_option_a_shortcut_subsamples_and_pads[channels_last]",)),
    # Augmentation and test views (Sec. 3.4, 4.2, Tables 3 and 4).
    M("ImageNet scale range [256, 480] -> [224, 960]", "keras_resnet/data/augment.py",
      "low, high = scaled(256, image_size), scaled(480, image_size)",
      "low, high = scaled(224, image_size), scaled(960, image_size)",
      (PAPER + "test_imagenet_training_scales_the_shorter_side_to_256_480",)),
    M("CIFAR padding 4 -> 8 pixels", "keras_resnet/data/augment.py",
      "    pad = image_size // 8", "    pad = image_size // 4",
      (PAPER + "test_cifar_training_pads_4_pixels_and_crops_32",)),
    M("CIFAR padding with 0, not the mean", "keras_resnet/data/augment.py",
      "image = resize_to(image, image_size) - pad_value", "image = resize_to(image, image_size)",
      ("tests/data/test_data.py::test_cifar_augmentation_pads_with_the_mean",)),
    M("test resize 256 -> 288", "keras_resnet/data/augment.py",
      'return resize_shorter(tf.cast(image, "float32"), scaled(256, image_size))',
      'return resize_shorter(tf.cast(image, "float32"), scaled(288, image_size))',
      (PAPER + "test_test_views_are_256_center_224_and_ten_crops",)),
    M("10-crop flips vertically", "keras_resnet/data/augment.py",
      "tf.reverse(crops, axis=[2])", "tf.reverse(crops, axis=[1])",
      (PAPER + "test_test_views_are_256_center_224_and_ten_crops",)),
    M("multi-scale 640 -> 600", "keras_resnet/data/augment.py",
      "SCALES = (224, 256, 384, 480, 640)", "SCALES = (224, 256, 384, 480, 600)",
      (PAPER + "test_multiscale_uses_table_4s_scales",)),
    # Preprocessing: the caffe mean (BGR) and the per-pixel mean (Sec. 4.2).
    M("caffe mean in RGB order", "keras_resnet/models/pretrained.py",
      "mean=(103.939, 116.779, 123.68)", "mean=(123.68, 116.779, 103.939)",
      (PAPER + "test_the_caffe_mean_is_keras_applications",)),
    M("per-pixel mean divides by batches, not images", "keras_resnet/models/preprocessing.py",
      "count += batch.shape[0]", "count += 1",
      ("tests/models/test_preprocessing.py::test_pixel_mean_from_array_and_batches_and_subtraction",)),
    M("CIFAR split 45k/5k -> 49k/1k", "keras_resnet/data/sources.py",
      'TFDS_SPLITS = {"cifar10": ("train[:45000]", "train[45000:]")}',
      'TFDS_SPLITS = {"cifar10": ("train[:49000]", "train[49000:]")}',
      ("tests/data/test_data.py::test_tfds_cifar10_uses_the_45k_5k_split",)),
    # The training order: a function of the seed, the same from every iterator.
    M("one reshuffling shuffle shared by every iterator", "keras_resnet/data/pipeline.py",
      "shuffled = tf.data.Dataset.from_tensors(0).flat_map(\n"
      "        lambda _: examples.shuffle(buffer, seed=seed).repeat())",
      "shuffled = examples.shuffle(buffer, seed=seed).repeat()",
      ("tests/data/test_data.py::test_training_order_is_the_same_from_every_iterator_and_new_every_pass",)),
    M("every pass in the same order", "keras_resnet/data/pipeline.py",
      "lambda _: examples.shuffle(buffer, seed=seed).repeat())",
      "lambda _: examples.shuffle(buffer, seed=seed, reshuffle_each_iteration=False).repeat())",
      ("tests/data/test_data.py::test_training_order_is_the_same_from_every_iterator_and_new_every_pass",)),
    # table1's counts: arithmetic on the variant table, no model built.
    M("table1 builds the models to count them", "keras_resnet/models/complexity.py",
      "    params, flops = counts(name, size)\n",
      "    model = resnet.get_model(name, weights=None, input_shape=(size, size, 3))\n"
      "    params, flops = count_params(model), count_flops(model)\n",
      ("tests/reproduce/test_table1_counts.py::test_table1_prints_the_papers_counts_and_its_files_and_builds_no_model",)),
    M("counted option B projects nowhere", "keras_resnet/models/complexity.py",
      'if spec.residual and (shortcut == "C" or (shortcut == "B" and grows)):',
      'if spec.residual and shortcut == "C":',
      ("tests/reproduce/test_table1_counts.py::test_counts_are_the_built_models[resnet20-40-B]",)),
    M("counts take a shortcut the builder refuses", "keras_resnet/models/complexity.py",
      "    arguments.check_block_options(shortcut, version)\n", "",
      ("tests/reproduce/test_table1_counts.py::test_counts_refuse_what_the_builder_refuses_in_its_words",)),
    # The Ctrl-C line starts a line of its own.
    M("the interrupt line lands on the progress bar's", "keras_resnet/programs/cli.py",
      '            self.mid_line = not text.endswith("\\n")',
      '            self.mid_line = False',
      ("tests/programs/test_interrupt.py::test_the_interrupt_line_starts_a_line_of_its_own[progress_bar]",)),
    # The documentation: its commands are the programs' own.
    M("train.py's --train_steps renamed under the documentation", "keras_resnet/programs/train.py",
      'flags.DEFINE_integer("train_steps",', 'flags.DEFINE_integer("steps",',
      ("tests/test_docs.py::test_commands_name_only_flags_their_program_has[README.md]",)),
    # Recipes (Sec. 3.4, 4.2) and the linear learning-rate scaling.
    M("CIFAR lr drops 32k/48k -> 32k/49k", "keras_resnet/training/recipes.py",
      "boundaries=(32000, 48000)", "boundaries=(32000, 49000)",
      (PAPER + "test_the_cifar_recipe_is_section_4_2",)),
    M("ResNet-110 warm-up lr 0.01 -> 0.001", "keras_resnet/training/recipes.py",
      "warmup_learning_rate=0.01", "warmup_learning_rate=0.001",
      (PAPER + "test_the_cifar_recipe_is_section_4_2",)),
    M("weight decay 1e-4 -> 5e-4", "keras_resnet/training/recipes.py",
      "weight_decay: float = 1e-4", "weight_decay: float = 5e-4",
      (PAPER + "test_the_cifar_recipe_is_section_4_2",)),
    M("SGD momentum 0.9 -> 0.99", "keras_resnet/training/recipes.py",
      "momentum: float = 0.9", "momentum: float = 0.99",
      (PAPER + "test_the_imagenet_recipe_is_section_3_4",)),
    # The compiled training step, against PyTorch's on the same net and batches.
    M("the compiled SGD is Nesterov's", "keras_resnet/training/model.py",
      "nesterov=run.recipe.nesterov),", "nesterov=True),",
      (SOLVER,)),
    M("the compiled SGD has no momentum", "keras_resnet/training/model.py",
      "momentum=run.recipe.momentum,", "momentum=0.0,",
      (SOLVER,)),
    M("a strided 3x3 conv pads as TensorFlow's same (bottom and right only)",
      "keras_resnet/models/blocks.py",
      "if strides > 1 or kernel_size == 1:", "if kernel_size == 1:",
      (SOLVER,)),
    M("PCA colour noise std 0.1 -> 0.01", "keras_resnet/training/recipes.py",
      "pca_lighting=0.1,", "pca_lighting=0.01,",
      (PAPER + "test_the_imagenet_recipe_is_section_3_4",)),
    M("ImageNet lr drops not every 30 epochs", "keras_resnet/training/recipes.py",
      "boundaries=(150150, 300300, 450450)", "boundaries=(150150, 300300, 400400)",
      ("tests/training/test_recipes.py::test_imagenet_paper_drops_every_30_epochs",)),
    M("lr scales inversely with the global batch", "keras_resnet/training/recipes.py",
      "lr = recipe.learning_rate / ratio", "lr = recipe.learning_rate * ratio",
      ("tests/training/test_recipes.py::test_linear_scaling_with_global_batch",)),
    # keras.applications' files: conv biases and epsilon 1.001e-5 folded into BN.
    M("conv bias added to the BN mean, not subtracted", "keras_resnet/models/weights.py",
      'values["moving_mean"] - bias', 'values["moving_mean"] + bias',
      ("tests/models/test_weights.py::test_conv_biases_and_epsilon_fold_into_the_bn_statistics[legacy.h5]",)),
    M("file's BN epsilon folded with the wrong sign", "keras_resnet/models/weights.py",
      "(source_epsilon - bn.epsilon)", "(bn.epsilon - source_epsilon)",
      ("tests/models/test_weights.py::test_conv_biases_and_epsilon_fold_into_the_bn_statistics[legacy.h5]",)),
    # Speed on CPUs without AVX-512 (benchmarks/RESULTS.md).
    M("oneDNN not asked for by default", "keras_resnet/programs/cli.py",
      'os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")', 'os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")',
      ("tests/test_package.py::test_programs_ask_tensorflow_for_onednn_unless_the_user_said_otherwise",)),
    # --------------------------------------------- (b) failure-behaviour promises
    # Atomic writes: staging path, renamed into place; nothing partial left.
    M("atomic write done in place (yields the final path)", "keras_resnet/files.py",
      "        yield staging\n"
      "        if not os.path.lexists(staging):\n"
      '            raise RuntimeError(f"Nothing was written to the staging path of {path}")\n'
      "        _fsync(staging)\n",
      "        yield path\n"
      "        staging = path\n"
      "        _fsync(path)\n"
      "        return\n",
      ("tests/test_files.py::test_only_the_rename_touches_a_final_name",)),
    M("a failed write leaves its staging file", "keras_resnet/files.py",
      "    except BaseException as e:\n        _remove(private)\n",
      "    except BaseException as e:\n",
      ("tests/test_files.py::test_a_failed_write_keeps_the_old_file_and_leaves_no_staging",)),
    M("staging of live processes removed, of dead ones kept", "keras_resnet/files.py",
      "if pid is None or pid == os.getpid() or _alive(pid):",
      "if pid is None or pid == os.getpid() or not _alive(pid):",
      ("tests/test_files.py::test_staging_of_dead_processes_is_removed_and_of_live_ones_kept",)),
    M("full disk: the error does not say the free space", "keras_resnet/files.py",
      'f"Cannot write {path}: {reason} ({_free_space(folder)} free in {folder}); "',
      'f"Cannot write {path}: {reason}; "',
      ("tests/test_files.py::test_full_disk_is_one_line_naming_the_file_and_nothing_partial_stays",)),
    M("a recorded Ctrl-C does not stop the next write", "keras_resnet/files.py",
      "        if interrupted():\n            raise KeyboardInterrupt\n        _replace(staging, path)",
      "        _replace(staging, path)",
      ("tests/test_files.py::test_a_ctrl_c_python_swallows_still_stops_the_run[then_writes]",)),
    # The run lock.
    M("run lock shared, not exclusive", "keras_resnet/files.py",
      "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", "fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)",
      ("tests/test_files.py::test_run_lock_refuses_a_second_holder_and_not_a_killed_one",)),
    M("Ctrl-C exits 1, not 130", "keras_resnet/programs/cli.py",
      "INTERRUPTED_EXIT = 130", "INTERRUPTED_EXIT = 1",
      ("tests/test_files.py::test_run_main_interrupt_and_errors_are_one_line",)),
    # Divergence: NaN/inf loss or weights stop the run before anything is saved.
    M("a NaN loss does not stop the run (wrong key)", "keras_resnet/training/callbacks.py",
      'loss = float((logs or {}).get("loss", 0.0))', 'loss = float((logs or {}).get("val_loss", 0.0))',
      ("tests/training/test_train.py::test_a_loss_that_turns_nan_stops_the_run_at_that_step",)),
    M("infinite weights checked after the history row", "keras_resnet/training/trainer.py",
      "        StopOnDivergence(),\n        history,\n", "        history,\n        StopOnDivergence(),\n",
      ("tests/training/test_train.py::test_weights_that_turn_infinite_stop_the_epoch_before_its_history_row",)),
    M("weights not checked at the end of an epoch", "keras_resnet/training/callbacks.py",
      '        check_finite_weights(self.model, f"after epoch {epoch + 1}")',
      "        pass",
      ("tests/training/test_train.py::test_weights_that_turn_infinite_stop_the_epoch_before_its_history_row",)),
    # Resume, backup, restore: the newest intact saved state, the run's identity.
    M("restore tries the backup before checkpoints/last.keras", "keras_resnet/training/backup.py",
      '    return (os.path.join(model_dir, "checkpoints", "last.keras"),\n'
      "            os.path.join(folder, LATEST), os.path.join(folder, PREVIOUS))",
      "    return (os.path.join(folder, LATEST), os.path.join(folder, PREVIOUS),\n"
      '            os.path.join(model_dir, "checkpoints", "last.keras"))',
      ("tests/training/test_train_faults.py::test_stopped_while_the_backup_is_written_then_rerun[SIGTERM-2]",)),
    M("the previous backup is not kept", "keras_resnet/training/backup.py",
      "keep_previous=self._latest_usable()", "keep_previous=False",
      ("tests/training/test_train_faults.py::test_damaged_saved_states_resume_from_the_newest_intact_one[empty]",)),
    M("an unreadable saved state stops the resume", "keras_resnet/training/backup.py",
      "    except Exception as e:  # h5py, Keras and JSON errors alike: not this file.",
      "    except (KeyError, ValueError) as e:  # h5py, Keras and JSON errors alike: not this file.",
      ("tests/training/test_train_faults.py::test_damaged_saved_states_resume_from_the_newest_intact_one[empty]",)),
    M("no intact state: restarts from a half-loaded model", "keras_resnet/training/backup.py",
      "    for variable, value in zip(variables, initial):\n        variable.assign(value)\n", "",
      ("tests/training/test_train_faults.py::test_no_intact_saved_state_restarts_the_run_in_one_line",)),
    M("history keeps the restored epoch's stale rows", "keras_resnet/training/callbacks.py",
      'if r["epoch"] <= epoch]', 'if r["epoch"] <= epoch + 1]',
      ("tests/training/test_train.py::test_history_is_rewritten_from_the_restored_epoch[1]",)),
    M("a model_dir of another run's is overwritten", "keras_resnet/training/trainer.py",
      "not any(os.path.exists(p) for p in state)", "not all(os.path.exists(p) for p in state)",
      ("tests/training/test_train.py::test_model_dir_of_another_run_is_refused",)),
    M("a changed dataset continues the run", "keras_resnet/training/trainer.py",
      "        if before != now:", "        if before > now:",
      ("tests/training/test_train.py::test_a_dataset_changed_since_the_run_started_is_refused",)),
    M("a run that wrote nothing leaves its model_dir", "keras_resnet/training/trainer.py",
      "empty = created and os.listdir(model_dir)", "empty = not created and os.listdir(model_dir)",
      ("tests/programs/test_cli.py::test_locked_model_dir_removes_only_what_it_made_and_left_empty",)),
    # Metadata and weights of artefacts, checked by evaluate.py and export.
    M("NaN weights of evaluated/exported models not refused", "keras_resnet/models/finite.py",
      "if bad := int(np.size(values) - np.isfinite(values).sum()):",
      "if bad := int(np.isinf(values).sum()):",
      ("tests/evaluation/test_evaluate.py::test_non_finite_weights_and_outputs_are_refused",)),
    M("metadata class count not checked", "keras_resnet/evaluation/checks.py",
      "if info.num_classes != artefact.num_classes:", "if info.num_classes > artefact.num_classes:",
      ("tests/export/test_export.py::test_cli_refuses_metadata_that_contradicts_the_model",)),
    M("metadata input size not checked", "keras_resnet/evaluation/checks.py",
      "if artefact.image_size is not None and info.image_size != artefact.image_size:",
      "if artefact.image_size is None and info.image_size != artefact.image_size:",
      ("tests/export/test_export.py::test_cli_refuses_metadata_that_contradicts_the_model",)),
    M("metadata preprocessing not checked", "keras_resnet/evaluation/checks.py",
      "        if found != info.preprocessing:", "        if found is None:",
      ("tests/export/test_export.py::test_cli_refuses_metadata_that_contradicts_the_model",)),
    M("a damaged .keras (CRC) not refused", "keras_resnet/evaluation/artefacts.py",
      "damaged = archive.testzip()", "damaged = None",
      ("tests/evaluation/test_evaluate.py::test_corrupt_or_truncated_keras_files_are_named",)),
    M("an existing SavedModel version overwritten", "keras_resnet/export/saved_model.py",
      "if os.path.exists(path) and not overwrite:", "if os.path.isfile(path) and not overwrite:",
      ("tests/export/test_export.py::test_existing_version_is_refused_unless_overwrite",)),
    # Bad input: flags, data, files.
    M("learning_rate 0 accepted", "keras_resnet/training/run.py",
      "if value is not None and not 0 < value < math.inf:", "if value is not None and not 0 <= value < math.inf:",
      ("tests/training/test_train.py::test_bad_values_are_refused_before_any_work"
       "[change0-learning_rate must be > 0. Received: learning_rate=0.0]",)),
    M("--freeze_backbone accepted without --weights", "keras_resnet/training/run.py",
      "if config.freeze_backbone and config.weights is None:",
      "if config.freeze_backbone and config.weights == \"\":",
      ("tests/training/test_finetune.py::test_refused_before_any_work",)),
    M("an argument that is not a flag is ignored", "keras_resnet/programs/cli.py",
      "if len(argv) > 1 + arguments:", "if len(argv) > 2 + arguments:",
      ("tests/programs/test_cli.py::test_a_bad_flag_is_one_line_and_exit_2[resnet56-unexpected arguments: resnet56---name=value]",)),
    M("one class accepted for training", "keras_resnet/data/folders.py",
      "if len(names) < 2:", "if len(names) < 1:",
      ("tests/data/test_data.py::test_one_class_is_refused",)),
    M("hidden files count as data (only ._ skipped)", "keras_resnet/data/folders.py",
      'return name.startswith(".")', 'return name.startswith("._")',
      ("tests/data/test_data.py::test_hidden_files_and_folders_are_not_data",)),
    M("symlink loops followed", "keras_resnet/data/folders.py",
      "commonpath([real, holder]) == real", "commonpath([real, holder]) == holder",
      ("tests/data/test_data.py::test_symlink_loops_are_refused_naming_the_link",)),
    M("val/ class folder that train/ lacks accepted", "keras_resnet/data/folders.py",
      "unknown = sorted(set(class_folders(split_dir)) - set(class_names))",
      "unknown = sorted(set(class_names) - set(class_folders(split_dir)))",
      ("tests/evaluation/test_evaluate.py::test_folder_split_without_images_or_with_unknown_classes",)),
    M("images over max_pixels decoded", "keras_resnet/data/folders.py",
      "pixels <= max_pixels,", "pixels <= 2 * max_pixels,",
      ("tests/data/test_data.py::test_images_above_max_pixels_are_skipped_before_decoding",)),
    # Downloads: the md5 of a download and of the cached copy.
    M("cached download used without its checksum", "keras_resnet/models/downloads.py",
      "        if _digest(path, algorithm).startswith(expected):\n            return path\n        os.remove(path)\n",
      "        return path\n",
      ("tests/models/test_weights.py::test_corrupt_download_is_refused_and_a_corrupt_cache_is_replaced",)),
    M("downloaded file's checksum not compared", "keras_resnet/models/downloads.py",
      "            if not got.startswith(expected):", "            if not got:",
      ("tests/models/test_weights.py::test_corrupt_download_is_refused_and_a_corrupt_cache_is_replaced",)),
    # ---------------------------------------------------- (c) the layout
    M("model code imports the data layer", "keras_resnet/models/complexity.py",
      "from keras_resnet.models import resnet\n",
      "from keras_resnet.data import images  # noqa: F401\nfrom keras_resnet.models import resnet\n",
      ("tests/test_layout.py::test_no_module_imports_a_later_layer",)),
    M("the default model_dir leaves out the dataset", "keras_resnet/training/run.py",
      'return os.path.join("runs", f"{model}_{os.path.basename(os.path.normpath(dataset))}")',
      'return os.path.join("runs", model)',
      ("tests/training/test_train.py::test_run_decides_each_value_once",)),
    M("the programs look for the checkout inside the package", "keras_resnet/launch.py",
      "_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))",
      "_CHECKOUT = os.path.dirname(os.path.abspath(__file__))",
      ("tests/test_import.py::test_programs_are_known_by_the_command_line_that_started_the_interpreter",
       "tests/programs/test_cli.py::test_a_bad_flag_is_one_line_and_exit_2[resnet56-unexpected arguments: resnet56---name=value]")),
    M("programs told by sys.argv, which any code may rewrite", "keras_resnet/launch.py",
      "started = _started_with(sys.orig_argv if argv is None else argv)",
      "started = _started_with(sys.orig_argv if argv is None else argv) if argv else (\n"
      "        (\"script\", sys.argv[0]) if sys.argv else None)",
      ("tests/test_import.py::test_import_reads_no_flags_touches_no_stream_sets_nothing_and_registers",)),
    M("the programs import Keras before they prepare", "keras_resnet/programs/train.py",
      "from keras_resnet.programs import cli\n\ncli.prepare_program()",
      "import keras  # noqa: F401\nfrom keras_resnet.programs import cli\n\ncli.prepare_program()",
      ("tests/test_package.py::test_programs_ask_tensorflow_for_onednn_unless_the_user_said_otherwise",
       "tests/programs/test_cli.py::test_console_script_without_tensorflow_says_what_to_install")),
    M("the registered package name changes (old .keras files stop loading)",
      "keras_resnet/models/layers.py", 'PACKAGE = "keras_resnet"', 'PACKAGE = "keras_resnet.models"',
      ("tests/test_release_files.py::test_a_release_file_loads_evaluates_and_exports_unchanged",)),
    M("importing a models module imports Keras (the programs' quiet start-up)",
      "keras_resnet/models/__init__.py",
      "import importlib\n", "import importlib\n\nimport keras  # noqa: F401\n",
      ("tests/programs/test_cli.py::test_console_script_without_tensorflow_says_what_to_install",)),
    # -------------------------------------- (d) the paper's experiments
    M("a finished run made with other settings is reused", "keras_resnet/reproduce/runs.py",
      "        check_reusable(spec)\n", "        pass\n",
      ("tests/reproduce/test_experiments.py::test_a_finished_run_made_otherwise_is_refused",)),
    M("Fig. 7's std with ddof=1", "keras_resnet/reproduce/responses.py",
      "return float(np.sqrt(self.m2 / self.count))", "return float(np.sqrt(self.m2 / (self.count - 1)))",
      ("tests/reproduce/test_responses.py::test_stds_of_the_3x3_responses_match_the_hand_computation",)),
    M("train.py's --shortcut is not passed to the model", "keras_resnet/training/model.py",
      "weight_decay=recipe.weight_decay, shortcut=config.shortcut,",
      "weight_decay=recipe.weight_decay,",
      ("tests/training/test_train.py::test_the_shortcut_option_is_the_one_asked_for[A-3-0]",)),
    M("Fig. 4's ResNets with the default shortcuts (B), not option A", "keras_resnet/reproduce/imagenet.py",
      'shortcut="A" if model.startswith("resnet") else None,', "shortcut=None,",
      ("tests/reproduce/test_imagenet.py::test_fig4_and_table2_write_the_runs_own_numbers",)),
    M("Table 2 scored with the model's own test view, not 10-crop", "keras_resnet/reproduce/imagenet.py",
      'return RunSpec(name=model, config=config, protocol="10crop")',
      "return RunSpec(name=model, config=config)",
      ("tests/reproduce/test_imagenet.py::test_fig4_and_table2_write_the_runs_own_numbers",)),
    M("an experiment's bad options refused only after its output folder is made",
      "keras_resnet/reproduce/experiments.py",
      "    if experiment.check is not None:\n        experiment.check(options)\n    check_output_dir(output_dir, identity)\n",
      "    check_output_dir(output_dir, identity)\n    if experiment.check is not None:\n        experiment.check(options)\n",
      ("tests/reproduce/test_experiments.py::test_bad_input_is_one_line",)),
    M("Table 4 scored 10-crop, not multi-scale", "keras_resnet/reproduce/imagenet.py",
      '"table4": ("multiscale", TABLE4)', '"table4": ("10crop", TABLE4)',
      ("tests/reproduce/test_imagenet.py::test_tables_3_and_4_score_given_models_by_their_protocols",)),
    M("ResNet-34 C taken for B", "keras_resnet/reproduce/imagenet.py",
      'return "ResNet-34 C" if projections == 16 else "ResNet-34 B"',
      'return "ResNet-34 C" if projections == 17 else "ResNet-34 B"',
      ("tests/reproduce/test_imagenet.py::test_a_model_is_matched_to_its_row_of_tables_3_and_4[resnet34-C-ResNet-34 C]",)),
    M("Table 6's CIFAR-10 errors beside a run on any data set", "keras_resnet/reproduce/cifar.py",
      "    return PAPER_ERRORS.get(model) if dataset == PAPER_DATASET else None",
      "    return PAPER_ERRORS.get(model)",
      ("tests/reproduce/test_experiments.py::test_the_papers_column_stands_beside_cifar10_runs_only",)),
    M("fig6's initial nets not seeded as train.py seeds them", "keras_resnet/reproduce/gradients.py",
      "    keras.utils.set_random_seed(settings.config.seed)\n", "",
      ("tests/reproduce/test_gradients.py::test_the_initial_model_is_the_one_train_py_starts_from",)),
    M("fig6's gradients measured in inference mode", "keras_resnet/reproduce/gradients.py",
      "labels, model(images, training=True)))", "labels, model(images, training=False)))",
      ("tests/reproduce/test_gradients.py::test_gradients_at_initialisation_grow_towards_the_input_in_a_deep_plain_net_only",)),
    M("history's kernel_norm2 sums other weights than the conv kernels",
      "keras_resnet/training/callbacks.py",
      "    return [v for v in model.trainable_variables if len(v.shape) == 4]",
      "    return list(model.trainable_variables)",
      ("tests/training/test_train.py::test_history_records_the_kernels_squared_norm_each_epoch",)),
    M("curves drawn without markers (a one-epoch run shows nothing)",
      "keras_resnet/reproduce/report.py",
      '                        marker="o", markersize=5, color=colour, label=curve.label)',
      "                        color=colour, label=curve.label)",
      ("tests/reproduce/test_report.py::test_curves_figure_draws_train_dashed_and_test_bold_in_one_colour_per_curve",)),
    # ------------------------------------------- (e) the default run
    M("a slow test's cover is itself left out of the default run", "tests/training/test_train_faults.py",
      "def test_full_disk_says_which_file_and_leaves_nothing_partial(",
      "@pytest.mark.slow\ndef test_full_disk_says_which_file_and_leaves_nothing_partial(",
      ("tests/test_repo.py::test_each_slow_test_names_the_faster_tests_that_cover_it",)),
    # ------------------------------------------- (f) backbone features
    M("backbone features taken at a stage's first block, not its last",
      "keras_resnet/models/features.py",
      'layer = f"conv{stage}_block{block}_out"', 'layer = f"conv{stage}_block1_out"',
      ("tests/models/test_features.py::test_features_equal_the_classifiers_intermediate_outputs[resnet50-64]",)),
    # ------------------------------------------- (g) converter
    M("torchvision conv kernels read as (out, in, h, w) -> (h, w, out, in)",
      "keras_resnet/models/state_dicts.py",
      "return np.transpose(tensor, (2, 3, 1, 0))", "return np.transpose(tensor, (2, 3, 0, 1))",
      ("tests/models/test_convert.py::test_the_converted_classifier_gives_pytorchs_logits[resnet18]",)),
    # ------------------------------------------- (h) the weights table
    M("named weights loaded into a net of other options (v1 for v1.5 weights)",
      "keras_resnet/models/pretrained.py",
      "    if wrong:\n", "    if False:\n",
      (PRETRAINED + "test_resnet50_modern_weights_need_v15_and_are_pytorchs[a1_in1k]",)),
    M("every download checked with md5, whatever the table's algorithm",
      "keras_resnet/models/downloads.py",
      "    digest, received = hashlib.new(algorithm), 0", "    digest, received = hashlib.md5(), 0",
      (PRETRAINED + "test_resnet18_imagenet_is_torchvisions_with_and_without_top_and_after_a_round_trip",)),
    M("the torchvision normalisation does not divide by the std",
      "keras_resnet/models/preprocessing.py",
      "        if self.std is None:\n            return x\n", "        return x\n",
      (PRETRAINED + "test_get_preprocessing_gives_what_the_weights_expect",)),
    M("a run from torchvision's weights trains with the caffe mean",
      "keras_resnet/training/run.py",
      "    if weights.normalization is not None:\n        return weights.normalization\n", "",
      (PRETRAINED + "test_fine_tuned_from_torchvision_weights_is_evaluated_and_served_with_their_normalisation",)),
    M("a torchvision state dict file evaluated with the caffe mean",
      "keras_resnet/models/resolved.py",
      '                               normalization="torchvision")',
      '                               normalization=None)',
      (PRETRAINED + "test_a_state_dict_file_brings_torchvisions_normalisation_and_v15",)),
    M("a torch.save file's pickle may name any global",
      "keras_resnet/models/torch_pickle.py",
      "        if (module, name) not in self.globals:", "        if False:",
      ("tests/models/test_torch_files.py::test_pickle_with_other_globals_is_refused_before_it_runs",)),
    M("a torch.save tensor's strides ignored (read as contiguous)",
      "keras_resnet/models/torch_files.py",
      "        strides = tuple(s * elements.itemsize for s in stride)",
      "        strides = tuple(int(np.prod(size[i + 1:])) * elements.itemsize for i in range(len(size)))",
      ("tests/models/test_torch_files.py::test_non_contiguous_and_shared_storages",)),
    # ------------------------------------------- (i) untrusted input: torch.save files
    M("a .pth pickle may BUILD (set the state of) any object", "keras_resnet/models/torch_pickle.py",
      "        if type(target) is not _OrderedDict or type(state) not in (dict, type(None)):",
      "        if False:",
      (HOSTILE_PTH + "test_build_on_anything_but_an_ordered_dict_is_refused",)),
    M("a .pth pickle's dict keys of any type (a deep tuple is hashed)",
      "keras_resnet/models/torch_pickle.py",
      "            if not (type(key) is str or (type(key) is int and -_MAX_KEY < key < _MAX_KEY)):",
      "            if False:",
      (HOSTILE_PTH + "test_deep_nesting_is_refused_without_a_crash[key]",)),
    M("a .pth pickle's result nests without bound", "keras_resnet/models/torch_pickle.py",
      "        if height > MAX_DEPTH:", "        if False:",
      (HOSTILE_PTH + "test_deep_nesting_is_refused_without_a_crash[value]",)),
    M("a .pth pickle's MARKs nest without bound", "keras_resnet/models/torch_pickle.py",
      "        if len(self.marks) >= MAX_DEPTH:", "        if False:",
      (HOSTILE_PTH + "test_open_marks_are_bounded",)),
    M("a .pth pickle's opcodes unbounded", "keras_resnet/models/torch_pickle.py",
      "        if count > MAX_OPCODES:", "        if False:",
      (HOSTILE_PTH + "test_opcode_flood_is_refused_within_seconds",)),
    M("a .pth pickle's memo unbounded", "keras_resnet/models/torch_pickle.py",
      "        if len(self.memo) >= MAX_MEMO and index not in self.memo:", "        if False:",
      (HOSTILE_PTH + "test_memo_flood_is_refused",)),
    M("a .pth pickle's integers unbounded", "keras_resnet/models/torch_pickle.py",
      "        if value.bit_length() > _MAX_INT_BITS:", "        if False:",
      (HOSTILE_PTH + "test_huge_integer_is_refused",)),
    M("a .pth pickle's result handed over as built (duck types pass)",
      "keras_resnet/models/torch_pickle.py",
      "    return _exact_copy(machine.result, results)", "    return machine.result",
      (HOSTILE_PTH + "test_ordered_dict_state_is_dropped_and_the_result_is_a_plain_dict",)),
    M("a .pth file may make us allocate without bound", "keras_resnet/models/torch_files.py",
      "        if self.spent + nbytes > self.budget:", "        if False:",
      (HOSTILE_PTH + "test_stride_zero_tensor_larger_than_the_file_allows_is_refused",)),
    M("a .pth record's declared size unchecked", "keras_resnet/models/torch_files.py",
      "        if limit is not None and info.file_size > limit:", "        if False:",
      (HOSTILE_PTH + "test_data_pkl_that_inflates_past_its_cap_is_refused",)),
    M("names from a .pth shown raw (terminal codes)", "keras_resnet/models/torch_pickle.py",
      "    if text.isprintable() and len(text) <= limit:", "    if len(text) <= limit:",
      (HOSTILE_PTH + "test_global_name_with_terminal_codes_is_shown_escaped",)),
    # ------------------------------------------- (i) untrusted input: weight downloads
    M("a download has no deadline (a server trickling bytes holds it)",
      "keras_resnet/models/downloads.py",
      "        threading.Thread(target=self._watch, daemon=True).start()", "        pass",
      ("tests/models/test_hostile_downloads.py::"
       "test_a_server_sending_a_byte_every_half_second_fails_at_the_deadline",)),
    M("a download has no byte cap (an endless body fills the disk)",
      "keras_resnet/models/downloads.py",
      "                if received > bounds.size:", "                if False:",
      ("tests/models/test_hostile_downloads.py::"
       "test_an_endless_body_is_cut_at_the_size_bound_and_nothing_is_kept",)),
    M("a download's announced length past the cap is read anyway",
      "keras_resnet/models/downloads.py",
      "            if length is not None and length > bounds.size:", "            if False:",
      ("tests/models/test_hostile_downloads.py::"
       "test_an_endless_body_is_cut_at_the_size_bound_and_nothing_is_kept",)),
    M("an infinite download timeout accepted (OverflowError in the socket)",
      "keras_resnet/models/downloads.py",
      "    if not 0 < seconds <= MAX_SECONDS:", "    if not 0 < seconds:",
      ("tests/models/test_hostile_downloads.py::"
       "test_bad_seconds_are_refused_in_one_line_naming_the_variable",
       "tests/models/test_hostile_downloads.py::"
       "test_a_program_prints_one_line_for_an_infinite_timeout")),
    # ------------------------------------------- (i) untrusted input: shared folders, --model_dir
    M("the lock file opened through a symlink (no O_NOFOLLOW)", "keras_resnet/files.py",
      "fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)",
      "fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, mode)",
      ("tests/test_files.py::test_a_lock_file_that_is_not_a_plain_file_of_its_own_is_refused[symlink]",
       "tests/test_files.py::test_the_export_lock_does_not_follow_a_symlink",
       FOREIGN + "test_foreign_or_planted_model_dirs_are_refused_before_anything_is_written")),
    M("a lock file that is not a regular file (a FIFO) is taken", "keras_resnet/files.py",
      "    if kind != stat.S_IFREG:\n        os.close(fd)\n", "    if False:\n        os.close(fd)\n",
      ("tests/test_files.py::test_a_lock_file_that_is_not_a_plain_file_of_its_own_is_refused[fifo]",)),
    M("a lock file hard-linked to another file is truncated", "keras_resnet/files.py",
      "        if links > 1:", "        if False:",
      ("tests/test_files.py::test_a_lock_file_that_is_not_a_plain_file_of_its_own_is_refused[hard_link]",)),
    M("a staging folder that exists is reused (a planted link followed)", "keras_resnet/files.py",
      "            os.mkdir(private, 0o700)", "            os.makedirs(private, 0o700, exist_ok=True)",
      ("tests/test_files.py::test_a_staging_name_planted_as_a_link_is_not_followed",)),
    M("a staging folder others may write in", "keras_resnet/files.py",
      "            os.mkdir(private, 0o700)", "            os.mkdir(private, 0o777)",
      ("tests/test_files.py::test_a_staging_name_planted_as_a_link_is_not_followed",)),
    M("any *.partial-<digits> name removed as stale staging", "keras_resnet/files.py",
      "    match = _STAGING_NAME.fullmatch(name)", '    match = re.search(r"\\.partial-([0-9]+)", name)',
      ("tests/test_files.py::test_only_staging_of_ours_is_removed_and_no_link_is_followed",)),
    M("stale staging of another user's, or a link named as ours, removed", "keras_resnet/files.py",
      "        if info.st_uid != os.geteuid() or kind not in (stat.S_IFDIR, stat.S_IFREG):",
      "        if False:",
      ("tests/test_files.py::test_only_staging_of_ours_is_removed_and_no_link_is_followed",)),
    M("a file over its size bound accepted", "keras_resnet/files.py",
      "    if size > max_bytes or len(content) > max_bytes:", "    if False:",
      ("tests/test_files.py::test_a_fifo_is_refused_without_waiting_and_a_large_file_before_it_is_read",
       FOREIGN + "test_foreign_or_planted_model_dirs_are_refused_before_anything_is_written")),
    M("config.json read through a symlink", "keras_resnet/files.py",
      "    fd = open_regular(path, os.O_RDONLY)", "    fd = os.open(path, os.O_RDONLY)",
      (FOREIGN + "test_foreign_or_planted_model_dirs_are_refused_before_anything_is_written",)),
    M("a folder of a user's files accepted as a model_dir", "keras_resnet/training/trainer.py",
      '    other = files.foreign_entry(model_dir, SUMMARY, ours=("workers",))', "    other = None",
      (FOREIGN + "test_foreign_or_planted_model_dirs_are_refused_before_anything_is_written",)),
    M("the model_dir checked only once its .lock is made", "keras_resnet/training/trainer.py",
      "    check_model_dir(model_dir)\n    with locked_model_dir(model_dir):\n",
      "    with locked_model_dir(model_dir):\n        check_model_dir(model_dir)\n",
      (FOREIGN + "test_foreign_or_planted_model_dirs_are_refused_before_anything_is_written",)),
    M("a config.json that is a JSON list taken for a run's summary", "keras_resnet/training/run.py",
      '    if type(summary) is not dict or type(summary.get("config")) is not dict:',
      "    if False:",
      (FOREIGN + "test_foreign_or_planted_model_dirs_are_refused_before_anything_is_written",)),
    M("config.json parsed with no depth bound", "keras_resnet/training/run.py",
      "        summary = metadata.parse_json(content)",
      '        summary = __import__("json").loads(content)',
      (FOREIGN + "test_a_config_json_nested_too_deep_is_read_as_unreadable_in_bounds",)),
    # ------------------------------------------- (i) untrusted input: weights and model files
    M("a .keras member's declared size not held to its cap", "keras_resnet/models/metadata.py",
      "        if cap is not None and member.file_size > cap:",
      "        if False:",
      ("tests/models/test_hostile_model_files.py::test_zip_bombs_are_refused_by_declared_size_before_any_inflation",)),
    M("a .keras member may expand without bound (a zip bomb)", "keras_resnet/models/metadata.py",
      "        if expands_too_much(member.file_size, member.compress_size):",
      "        if False:",
      ("tests/models/test_hostile_model_files.py::test_zip_bombs_are_refused_by_declared_size_before_any_inflation",)),
    M("a .keras archive's stored sizes not held to the file's", "keras_resnet/models/metadata.py",
      "    if stored > os.path.getsize(path):",
      "    if False:",
      ("tests/models/test_hostile_model_files.py::test_zip_bombs_are_refused_by_declared_size_before_any_inflation",)),
    M("a .keras member read whole, not at most its cap", "keras_resnet/models/metadata.py",
      "        content = f.read(cap + 1)",
      "        content = f.read()",
      ("tests/models/test_hostile_model_files.py::test_zip_bombs_are_refused_by_declared_size_before_any_inflation",)),
    M("evaluate's .keras loader inflates the archive before checking it", "keras_resnet/evaluation/artefacts.py",
      "        metadata.check_keras_archive(path, archive)\n",
      "",
      ("tests/models/test_hostile_model_files.py::test_zip_bombs_are_refused_by_declared_size_before_any_inflation",)),
    M("an HDF5 weights dataset may expand without bound", "keras_resnet/models/weights.py",
      "    if metadata.expands_too_much(size, stored):",
      "    if False:",
      ("tests/models/test_hostile_model_files.py::test_zip_bombs_are_refused_by_declared_size_before_any_inflation",)),
    M("an HDF5 weights dataset of any dtype", "keras_resnet/models/weights.py",
      ' and item.dtype.kind in "fiub"):',
      "):",
      ("tests/models/test_hostile_model_files.py::test_an_hdf5_dataset_of_text_is_refused_naming_it",)),
    M("metadata JSON parsed with no depth bound", "keras_resnet/models/metadata.py",
      "    if depth > MAX_JSON_DEPTH:",
      "    if False:",
      ("tests/models/test_hostile_model_files.py::test_json_nested_past_the_bound_is_refused_before_it_is_parsed",)),
    M("a .keras metadata entry of any JSON type", "keras_resnet/models/metadata.py",
      "            if type(fields) is not dict:",
      "            if False:",
      ("tests/models/test_hostile_model_files.py::test_metadata_entry_of_another_json_type_is_refused[array]",)),
    M("a .keras metadata field of any JSON type", "keras_resnet/models/metadata.py",
      "                if type(value) is not _FIELD_TYPES[key]:",
      "                if False:",
      ("tests/models/test_hostile_model_files.py::test_metadata_entry_of_another_json_type_is_refused[boolean_size]",)),
    M("a .keras config's BN epsilon taken as it is", "keras_resnet/models/metadata.py",
      "    if type(epsilon) not in (int, float) or not 0 < epsilon <= sys.float_info.max:  # NaN fails too",
      "    if False:",
      ("tests/models/test_hostile_model_files.py::test_a_bn_epsilon_that_is_no_finite_positive_number_is_refused[string]", "tests/models/test_hostile_model_files.py::test_a_bn_epsilon_that_is_no_finite_positive_number_is_refused[nan]",)),
    M("evaluate's .keras loader leaves the config to Keras", "keras_resnet/evaluation/artefacts.py",
      "        metadata.read_keras_config(path, archive)\n",
      "",
      ("tests/models/test_hostile_model_files.py::test_a_bn_epsilon_that_is_no_finite_positive_number_is_refused[string]",)),
    M("a safetensors dtype NumPy lacks read anyway", "keras_resnet/models/state_dicts.py",
      "            refused = [key for key, dtype in dtypes.items() if dtype not in SAFETENSORS_DTYPES]",
      "            refused = []",
      ("tests/models/test_hostile_model_files.py::test_a_safetensors_dtype_not_read_is_refused_naming_the_tensor[F8_E4M3]",)),
    M("a state dict's block numbers of any length", "keras_resnet/models/state_dicts.py",
      '_BLOCK_KEY = re.compile(r"layer([1-4])\\.(\\d{1,%d})\\." % _MAX_DIGITS)',
      '_BLOCK_KEY = re.compile(r"layer([1-4])\\.(\\d+)\\.")',
      ("tests/models/test_hostile_model_files.py::test_block_numbers_of_thousands_of_digits_are_no_block",)),
    M("a state dict's module numbers sorted by int() of any length", "keras_resnet/models/state_dicts.py",
      "        if part.isdigit() and len(part) <= _MAX_DIGITS:",
      "        if part.isdigit():",
      ("tests/models/test_hostile_model_files.py::test_block_numbers_of_thousands_of_digits_are_no_block",)),
    M("a Keras file's block numbers of any length", "keras_resnet/models/weights.py",
      're.match(r"conv(\\d{1,4})_block(\\d{1,4})_", name)',
      're.match(r"conv(\\d+)_block(\\d+)_", name)',
      ("tests/models/test_hostile_model_files.py::test_block_numbers_of_thousands_of_digits_are_no_block",)),
    M("a Keras 3 file's variable index of any text", "keras_resnet/models/weights.py",
      "        if index is not None:  # int() of 4,301 digits raises",
      "        if False:",
      ("tests/models/test_hostile_model_files.py::test_block_numbers_of_thousands_of_digits_are_no_block",)),
    M("non-finite Keras weights loaded by weights=", "keras_resnet/models/weights.py",
      '            check_finite(value, f"Weights file {path}", variable.path, "not loaded")',
      "            pass",
      ("tests/models/test_hostile_model_files.py::test_non_finite_weights_are_refused_naming_the_file_and_tensor", "tests/models/test_hostile_model_files.py::test_train_py_refuses_non_finite_weights_before_an_epoch",)),
    M("non-finite state dict tensors loaded", "keras_resnet/models/state_dicts.py",
      '        check_finite(values[key], path, f"tensor {key!r}", "not loaded")',
      "        pass",
      ("tests/models/test_hostile_model_files.py::test_non_finite_weights_are_refused_naming_the_file_and_tensor", "tests/models/test_hostile_model_files.py::test_train_py_refuses_non_finite_weights_before_an_epoch",)),
    M("a weights file's non-finite input mean loaded", "keras_resnet/models/weights.py",
      '        check_finite(mean, f"Weights file {path}", f"{name} (its input mean)", "not loaded")',
      "        pass",
      ("tests/models/test_hostile_model_files.py::test_a_non_finite_input_mean_is_refused",)),
    M("a missing state dict file called a file of the wrong kind", "keras_resnet/models/state_dicts.py",
      "    if not os.path.isfile(path):\n        kind =",
      "    if False:\n        kind =",
      ("tests/models/test_hostile_model_files.py::test_a_missing_state_dict_file_is_said_not_to_exist",)),
    # ------------------------------------------- (i) untrusted input: Fashion-MNIST's IDX files
    M("fashion_mnist: validation share not seeded", "keras_resnet/data/fashion_mnist.py",
      "np.random.RandomState(seed).permutation(count)", "np.random.RandomState(0).permutation(count)",
      ("tests/data/test_fashion_mnist.py::test_the_validation_share_is_seeded_disjoint_and_a_tenth",)),
    M("fashion_mnist: padding off by one", "keras_resnet/data/fashion_mnist.py",
      "tf.pad(images, [[0, 0], [PAD, PAD], [PAD, PAD]])",
      "tf.pad(images, [[0, 0], [PAD - 1, PAD + 1], [PAD, PAD]])",
      ("tests/data/test_fashion_mnist.py::test_images_are_32x32_rgb_padded_with_background",)),
    M("fashion_mnist: validation split is the training split", "keras_resnet/data/fashion_mnist.py",
      'dataclasses.replace(train if split == "train" else val, name=split)',
      "dataclasses.replace(train, name=split)",
      ("tests/data/test_fashion_mnist.py::test_the_validation_share_is_seeded_disjoint_and_a_tenth",)),
    M("fashion_mnist: IDX dims not checked", "keras_resnet/data/fashion_mnist.py",
      "if magic != IDX_UBYTE + len(shape) or tuple(dims) != shape:",
      "if magic != IDX_UBYTE + len(shape):",
      ("tests/data/test_fashion_mnist.py::test_crafted_files_are_refused_in_one_line",)),
    M("fashion_mnist: IDX data sized by its header", "keras_resnet/data/fashion_mnist.py",
      "        if magic != IDX_UBYTE + len(shape) or tuple(dims) != shape:\n"
      "            raise ValueError(\n"
      "                f\"{path}: IDX header magic 0x{magic:08x}, dims {tuple(dims)}; accepted: \"\n"
      "                f\"Fashion-MNIST's magic 0x{IDX_UBYTE + len(shape):08x}, dims {shape}\")\n"
      "        data = stream.read(size + 1)",
      "        data = stream.read(math.prod(dims) + 1)",
      ("tests/data/test_fashion_mnist.py::test_a_lying_header_and_a_gzip_bomb_are_refused_within_their_expected_size",)),
    # Caught only by the child's address-space limit: the size check after it refuses the bomb too.
    M("fashion_mnist: IDX data inflated whole", "keras_resnet/data/fashion_mnist.py",
      "        data = stream.read(size + 1)\n",
      "        data = bytearray(zlib.decompress(open(path, 'rb').read(), 31)[header_size:])\n",
      ("tests/data/test_fashion_mnist.py::test_a_lying_header_and_a_gzip_bomb_are_refused_within_their_expected_size",)),
    M("fashion_mnist: gzip inflated without a cap", "keras_resnet/data/fashion_mnist.py",
      "self.inflater.decompress(self.pending, min(n - got, INFLATE_BYTES))",
      "self.inflater.decompress(self.pending)",
      ("tests/data/test_fashion_mnist.py::test_a_lying_header_and_a_gzip_bomb_are_refused_within_their_expected_size",)),
    M("fashion_mnist: data read without its extra byte", "keras_resnet/data/fashion_mnist.py",
      "        data = stream.read(size + 1)\n", "        data = stream.read(size)\n",
      ("tests/data/test_fashion_mnist.py::test_a_lying_header_and_a_gzip_bomb_are_refused_within_their_expected_size",
       "tests/data/test_fashion_mnist.py::test_crafted_files_are_refused_in_one_line")),
    M("fashion_mnist: label 10 accepted", "keras_resnet/data/fashion_mnist.py",
      "np.flatnonzero(labels >= len(CLASS_NAMES))", "np.flatnonzero(labels > len(CLASS_NAMES))",
      ("tests/data/test_fashion_mnist.py::test_crafted_files_are_refused_in_one_line",)),
    M("fashion_mnist: data after the gzip member accepted", "keras_resnet/data/fashion_mnist.py",
      "        stream.end()\n", "",
      ("tests/data/test_fashion_mnist.py::test_crafted_files_are_refused_in_one_line",)),
    M("fashion_mnist: FIFOs, devices and folders opened", "keras_resnet/data/fashion_mnist.py",
      "if not stat.S_ISREG(info.st_mode) or info.st_size > cap:", "if info.st_size > cap:",
      ("tests/data/test_fashion_mnist.py::test_links_are_read_to_regular_files_only",)),
    M("fashion_mnist: compressed size not capped", "keras_resnet/data/fashion_mnist.py",
      "if not stat.S_ISREG(info.st_mode) or info.st_size > cap:", "if not stat.S_ISREG(info.st_mode):",
      ("tests/data/test_fashion_mnist.py::test_crafted_files_are_refused_in_one_line",)),
    # ------------------------------------------- (i) untrusted input: images whose header lies
    M("GIF size read from its screen, not its frames", "keras_resnet/data/images.py",
      "(is_gif, tf.maximum(number(8, 2), gif.height), tf.maximum(number(6, 2), gif.width)),",
      "(is_gif, number(8, 2), number(6, 2)),",
      (HOSTILE_IMAGES + "test_a_gif_s_size_is_its_largest_frame_as_tensorflow_decodes_it",
       HOSTILE_IMAGES + "test_serving_refuses_gifs_by_what_they_decode_to_within_memory_and_time",
       HOSTILE_IMAGES + "test_image_folders_skip_gifs_that_decode_above_max_pixels")),
    M("GIF: every frame decoded, only the canvas counted", "keras_resnet/data/images.py",
      "(gif.pixels > max_pixels, tf.strings.format(", "(gif.pixels < 0, tf.strings.format(",
      (HOSTILE_IMAGES + "test_serving_refuses_gifs_by_what_they_decode_to_within_memory_and_time",)),
    M("GIF: folders count the canvas, not every frame", "keras_resnet/data/images.py",
      "tf.maximum(tf.reduce_prod(size), gif.pixels)", "tf.reduce_prod(size)",
      (HOSTILE_IMAGES + "test_a_gif_s_size_is_its_largest_frame_as_tensorflow_decodes_it",)),
    M("GIF: frames and extensions not bounded", "keras_resnet/data/images.py",
      "MAX_GIF_BLOCKS = 2048", "MAX_GIF_BLOCKS = 1 << 30",
      (HOSTILE_IMAGES + "test_serving_refuses_gifs_by_what_they_decode_to_within_memory_and_time",)),
    M("GIF: the walk goes on past MAX_GIF_BLOCKS", "keras_resnet/data/images.py",
      "lambda s: (s[7] == 0) & (s[2] <= MAX_GIF_BLOCKS)", "lambda s: s[7] == 0",
      (HOSTILE_IMAGES + "test_the_walk_costs_little_for_a_crafted_mb_of_sub_blocks_or_of_blocks",)),
    M("GIF: truncated or malformed accepted", "keras_resnet/data/images.py",
      "(~gif.complete, tf.strings.format(", "(gif.stop < 0, tf.strings.format(",
      (HOSTILE_IMAGES + "test_serving_refuses_gifs_by_what_they_decode_to_within_memory_and_time",
       HOSTILE_IMAGES + "test_image_folders_skip_gifs_that_decode_above_max_pixels")),
    M("GIF: local colour table not skipped", "keras_resnet/data/images.py",
      "tf.where(image, at + 11 + colour_table(fields[9])", "tf.where(image, at + 11",
      (HOSTILE_IMAGES + "test_a_gif_s_size_is_its_largest_frame_as_tensorflow_decodes_it",)),
    M("GIF: sub-blocks walked one a step", "keras_resnet/data/images.py",
      "_SKIP_DOUBLINGS = 8", "_SKIP_DOUBLINGS = 0",
      (HOSTILE_IMAGES + "test_the_walk_costs_little_for_a_crafted_mb_of_sub_blocks_or_of_blocks",)),
    M("Fashion-MNIST's quick runs as short as CIFAR-10's", "keras_resnet/reproduce/cifar.py",
      "        return dict(self.longer).get(dataset, self.train_steps)",
      "        return self.train_steps",
      ("tests/reproduce/test_experiments.py::test_quick_runs_on_fashion_mnist_train_twice_as_long_as_on_cifar10",)),
    M("the quick ResNet-56 starts at 0.1 (its warm-up dropped)", "keras_resnet/reproduce/cifar.py",
      'warmup=("resnet56",),', "",
      ("tests/reproduce/test_experiments.py::test_the_quick_resnet56_warms_up_as_the_papers_resnet110_and_no_other_run_does",)),
    M("a run's warmup_steps ignored", "keras_resnet/training/recipes.py",
      "round(recipe.warmup_steps * ratio) if warmup_steps is None else warmup_steps",
      "round(recipe.warmup_steps * ratio)",
      ("tests/training/test_recipes.py::test_a_runs_own_warm_up_is_not_scaled_and_defaults_to_a_tenth_of_the_rate",
       "tests/training/test_train.py::test_a_warm_up_asked_of_a_recipe_without_one_runs_at_a_tenth_then_the_schedule_takes_over")),
    M("a warm-up asked of a recipe without one left out of its schedule", "keras_resnet/training/run.py",
      'recipe = dataclasses.replace(recipe, warmup="constant")', "pass",
      ("tests/training/test_train.py::test_a_warm_up_asked_of_a_recipe_without_one_runs_at_a_tenth_then_the_schedule_takes_over",)),
    M("warmup_learning_rate 0 accepted", "keras_resnet/training/run.py",
      'for name in ("learning_rate", "warmup_learning_rate"):', 'for name in ("learning_rate",):',
      ("tests/training/test_train.py::test_bad_values_are_refused_before_any_work",)),
    M("Fashion-MNIST's labels no longer those of their images", "keras_resnet/data/fashion_mnist.py",
      "examples = tf.data.Dataset.from_tensor_slices((images, labels))",
      "examples = tf.data.Dataset.from_tensor_slices((images, labels[::-1]))",
      ("tests/training/test_learns_real_images.py::test_resnet20_learns_fashion_mnist_in_300_iterations",)),
    # ----------------------------------------------------------- (j) design
    M("an import circle put back (the weights table asks the builder for names)",
      "keras_resnet/models/pretrained.py",
      "    model = canonical_name(model)\n",
      "    from keras_resnet.models.resnet import canonical_name as of_builder\n\n"
      "    model = of_builder(model)\n",
      ("tests/test_layout.py::test_no_modules_import_each_other",)),
    M("a run resumed with its data folder spelt relative, not absolute, refused as another",
      "keras_resnet/training/trainer.py",
      '    if key != "dataset" or not', '    if True or not',
      ("tests/training/test_train.py::test_model_dir_is_refused_only_for_a_real_conflict",)),
    M("another run's folder refused naming only its first difference",
      "keras_resnet/training/trainer.py",
      "now\" for k in diff)", "now\" for k in diff[:1])",
      ("tests/training/test_train.py::test_model_dir_of_another_run_is_refused",)),
    M("a folder's test split scored to its end: Keras warns it ran out of data",
      "keras_resnet/training/trainer.py",
      "model.evaluate(data.test.repeat(), steps=math.ceil(data.num_test / run.batch_size),\n"
      "                                    verbose=0)",
      "model.evaluate(data.test, verbose=0)",
      ("tests/training/test_train.py::test_a_folders_test_split_is_scored_once_whole_without_a_keras_warning",)),
    M("a skipped test image counted as a skipped training image in the run's first line",
      "keras_resnet/training/trainer.py",
      '"%s on %s: %d training images, %d validation, %d test (%d skipped in all: "',
      '"%s on %s: %d training images, %d validation, %d test (%d training images skipped: "',
      ("tests/training/test_train.py::test_a_folders_test_split_is_scored_once_whole_without_a_keras_warning",)),
    M("train.py --deterministic leaves TensorFlow's ops as they are",
      "keras_resnet/training/trainer.py",
      "            tf.config.experimental.enable_op_determinism()\n", "            pass\n",
      ("tests/training/test_train_faults.py::test_deterministic_runs_side_by_side_give_the_same_weights_bit_for_bit",)),
    M("serving answers pixels outside [0, 255] (3e38: NaN scores)",
      "keras_resnet/export/saved_model.py",
      "            tf.abs(farthest - 127.5) <= 127.5,", "            tf.abs(farthest - 127.5) <= 3.5e38,",
      ("tests/export/test_export.py::test_bad_requests_fail_with_invalid_argument_and_serving_goes_on",)),
    M("serving's refusal of out-of-range pixels does not name the value",
      "keras_resnet/export/saved_model.py",
      '"images holds pixels outside [0, 255], the RGB values accepted; the farthest:",\n'
      "             farthest])",
      '"images holds pixels outside [0, 255], the RGB values accepted; the farthest:"])',
      ("tests/export/test_export.py::test_bad_requests_fail_with_invalid_argument_and_serving_goes_on",)),
    M("train.py --shortcut that published weights lack refused only after the data is read",
      "keras_resnet/training/run.py",
      "    weights.check_fits(include_top=False,", "    (lambda **_: None)(include_top=False,",
      ("tests/training/test_train.py::test_options_that_published_weights_lack_are_refused_before_any_work",)),
    M("a failed TFDS download leaves its empty folders behind", "keras_resnet/data/sources.py",
      "                os.rmdir(folder)", "                pass",
      ("tests/training/test_train_faults.py::test_offline_tfds_fails_fast_and_says_how_to_point_at_local_data",)),
    M("a TFDS download's progress bars and retry warnings before its error",
      "keras_resnet/data/sources.py",
      "        with _quiet_download():", "        with contextlib.nullcontext():",
      ("tests/training/test_train_faults.py::test_offline_tfds_fails_fast_and_says_how_to_point_at_local_data",)),
    M("a TFDS download's error cut mid-word", "keras_resnet/data/sources.py",
      "_shortened(str(e), 300)", "' '.join(str(e).split())[:200]",
      ("tests/training/test_train_faults.py::test_offline_tfds_fails_fast_and_says_how_to_point_at_local_data",)),
    M("evaluate.py records the split asked for: null for the default one it scored",
      "keras_resnet/evaluation/protocols.py",
      "result.update(dataset=dataset, split=examples.name)", "result.update(dataset=dataset, split=split)",
      ("tests/evaluation/test_evaluate.py::test_cli_writes_json_and_png_atomically",)),
    M("published weights scored with the paper's 256, not their own resize",
      "keras_resnet/models/resolved.py",
      "transform=EvalTransform(resize=entry.resize,", "transform=EvalTransform(resize=256,",
      (PRETRAINED + "test_named_weights_are_evaluated_with_their_own_transform[tv2_in1k]",
       "tests/models/test_resolved.py::test_a_name_brings_its_table_entry[tv2_in1k]")),
    M("evaluate.py's default for published weights is the metadata's test view",
      "keras_resnet/evaluation/protocols.py",
      "    if protocol is None and artefact.transform is not None:", "    if False:",
      (PRETRAINED + "test_named_weights_are_evaluated_with_their_own_transform[a1_in1k]",)),
    M("the weights' bicubic resize done bilinear", "keras_resnet/data/augment.py",
      'resize_shorter(tf.cast(image, "float32"), resize, interpolation), crop)',
      'resize_shorter(tf.cast(image, "float32"), resize), crop)',
      (PRETRAINED + "test_named_weights_are_evaluated_with_their_own_transform[a1_in1k]",)),
    M("a .keras file's metadata read again for the model (not the resolved weights')",
      "keras_resnet/models/weights.py",
      "info=weights.info,",
      'info=__import__("keras_resnet.models.resolved").models.resolved.read_info(weights.path),',
      ("tests/training/test_finetune.py::test_a_model_keras_is_resolved_once_and_its_metadata_read_once",)),
    M("a name of the table decided elsewhere than resolve_weights: a file named so hides it",
      "keras_resnet/models/resolved.py",
      "    if pretrained.is_named(weights):",
      "    if pretrained.is_named(weights) and not os.path.exists(str(weights)):",
      ("tests/models/test_resolved.py::test_a_file_or_none_brings_nothing_of_the_table",)),
]


# Promised behaviour that no test catches yet: not run by default (see --help).
NOT_YET_CAUGHT: list[Mutation] = []


# ------------------------------------------------------------------- the run


def stale(mutations: list[Mutation]) -> str | None:
    """A line naming the first mutation whose `old` is not exactly once in its file."""
    for m in mutations:
        with open(os.path.join(ROOT, m.path)) as f:
            count = f.read().count(m.old)
        if count != 1:
            return f"stale mutation {m.name!r}: its old text occurs {count} times in {m.path}"
    return None


def copy_tree(target: str) -> str:
    """Copies the tree's files (tracked, and new ones git does not ignore), as
    they are in the working tree, to `target`."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, listed):
        source = os.path.join(ROOT, name)
        if os.path.isfile(source):  # a tracked file deleted in the work tree is left out
            os.makedirs(os.path.dirname(os.path.join(target, name)), exist_ok=True)
            shutil.copy2(source, os.path.join(target, name))
    return target


def run_tests(copy: str, tests: tuple[str, ...] | list[str]) -> tuple[int, str]:
    """pytest's exit code and output for `tests`, run in `copy` with its code first."""
    env = dict(os.environ, PYTHONPATH=copy, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    # -m "": the slow tests too (the default run leaves them out).
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-n", "0",
               "-m", "", *tests]
    try:
        done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {TIMEOUT} s"
    return done.returncode, done.stdout + done.stderr


def check_copy_runs(copy: str) -> None:
    """Exits 2 unless the package imported under the copy's PYTHONPATH is the copy's
    (the checkout is installed editable, so it could shadow the copy)."""
    env = dict(os.environ, PYTHONPATH=copy)
    code = "import importlib.util; print(importlib.util.find_spec('keras_resnet').origin)"
    origin = subprocess.run([sys.executable, "-c", code], cwd=copy, env=env,
                            capture_output=True, text=True).stdout.strip()
    if not os.path.realpath(origin).startswith(os.path.realpath(copy) + os.sep):
        print(f"the copy's package is not the one that runs ({origin}); nothing was checked")
        sys.exit(2)


def baseline(copies: list[str], mutations: list[Mutation]) -> None:
    """Exits 2 if a selected test fails on the unmutated copies (the tests
    shared out among them)."""
    tests = sorted({t for m in mutations for t in m.tests})
    # No empty share: pytest given no test runs the whole suite.
    shares = [share for share in (tests[i::len(copies)] for i in range(len(copies))) if share]
    with concurrent.futures.ThreadPoolExecutor(len(copies)) as pool:
        runs = list(pool.map(run_tests, copies, shares))
    for rc, output in runs:
        if rc != 0:
            print(output[-4000:])
            print(f"baseline: the unmutated tree fails its tests (rc {rc}); nothing was checked")
            sys.exit(2)


def check(copy: str, m: Mutation) -> tuple[Mutation, str, float]:
    """Runs `m`'s tests on the copy with `m` applied; (m, result, seconds)."""
    path = os.path.join(copy, m.path)
    with open(path) as f:
        original = f.read()
    start = time.monotonic()
    try:
        with open(path, "w") as f:
            f.write(original.replace(m.old, m.new, 1))
        rc, _ = run_tests(copy, m.tests)
    finally:
        with open(path, "w") as f:
            f.write(original)
    result = {1: "caught", 0: "missed"}.get(rc, f"error (rc {rc})")
    return m, result, time.monotonic() - start


def check_all(copies: list[str], mutations: list[Mutation]) -> list[tuple[Mutation, str, float]]:
    """Checks every mutation, one copy per job; results in the list's order."""
    free = list(copies)

    def in_a_copy(m: Mutation) -> tuple[Mutation, str, float]:
        copy = free.pop()  # list.pop/append are atomic: each job has its own copy.
        try:
            return check(copy, m)
        finally:
            free.append(copy)

    with concurrent.futures.ThreadPoolExecutor(len(copies)) as pool:
        return list(pool.map(in_a_copy, mutations))


def table(results: list[tuple[Mutation, str, float]], seconds: float) -> str:
    """The markdown table of the results and a total line."""
    lines = ["| mutation | tests | result | seconds |", "|---|---|---|---|"]
    for m, result, took in results:
        tests = ", ".join(t.removeprefix("tests/") for t in m.tests)
        lines.append(f"| {m.name} | {tests} | {result} | {took:.0f} |")
    caught = sum(result == "caught" for _, result, _ in results)
    lines.append(f"\n{caught}/{len(results)} caught in {seconds:.0f} s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.mutations",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1,
                        help="mutations checked at a time (a copy of the tree each)")
    parser.add_argument("-k", dest="substring", default="",
                        help="only the mutations whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--not-yet-caught", action="store_true",
                        help="check NOT_YET_CAUGHT instead of MUTATIONS")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pool = NOT_YET_CAUGHT if args.not_yet_caught else MUTATIONS
    mutations = [m for m in pool if args.substring in m.name]
    if args.list or not mutations:
        print("\n".join(f"{m.name}  ({m.path}; {', '.join(m.tests)})" for m in mutations)
              or "no mutation matches")
        return 0 if mutations else 2
    problem = stale(mutations)
    if problem:
        print(problem)
        return 2
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutations-") as tmp:
        jobs = min(args.jobs, len(mutations))
        copies = [copy_tree(os.path.join(tmp, f"copy{i}")) for i in range(jobs)]
        for copy in copies:
            check_copy_runs(copy)
        baseline(copies, mutations)
        results = check_all(copies, mutations)
    print(table(results, time.monotonic() - start))
    return 0 if all(result == "caught" for _, result, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
