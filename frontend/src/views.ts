/**
 * Which live view goes in which tab (wiring only; the views live in charts/ and viz/).
 * Each tab is a two-column grid; a "wide" view takes the whole row.
 */

import { LossCurves } from "./charts/LossCurves";
import { RunsOverlay } from "./charts/RunsOverlay";
import type { TabId } from "./state";
import { SearchView, type SearchHost } from "./search/SearchView";
import type { View, ViewContext } from "./viewContext";
import { Attention } from "./viz/Attention";
import { BackpropTrace } from "./viz/BackpropTrace";
import { Boundary2D } from "./viz/Boundary2D";
import { DoctorNotes } from "./viz/DoctorNotes";
import { DrawDigit } from "./viz/DrawDigit";
import { Evaluation } from "./viz/Evaluation";
import { FeatureMaps } from "./viz/FeatureMaps";
import { Fgsm } from "./viz/Fgsm";
import { Filters } from "./viz/Filters";
import { GradCheck } from "./viz/GradCheck";
import { LayerStats } from "./viz/LayerStats";
import { OptimizerRace } from "./viz/OptimizerRace";
import { TransferBanner } from "./viz/TransferBanner";

export interface ViewSlot {
  /** the view's class name, for error messages and tests (data-view) */
  name: string;
  create(root: HTMLElement, ctx: ViewContext): View;
  wide?: boolean;
}

export interface TabSpec {
  id: TabId;
  title: string;
  /** what the tab shows, as a tooltip */
  hint: string;
  /** dataset kinds the tab is about; others show it dimmed (it still works) */
  kinds?: ("2d" | "image" | "tabular")[];
  views: ViewSlot[];
}

/** What the views may ask of the shell. */
export interface ShellHooks {
  showTab(tab: TabId): void;
  /** show a stored or running run in the page again (the Runs tab's "open") */
  openRun(runId: string): void;
  /** what the Search tab needs (search/SearchView.ts); `ready` hands the shell the view it made */
  search: SearchHost & { ready(view: SearchView): void };
}

export function tabSpecs(shell: ShellHooks): TabSpec[] {
  let layerStats: LayerStats | null = null;
  // A hint's "show evidence": the loss chart is on the Training tab, the rest are LayerStats cards.
  const showChart = (chart: string): void => {
    if (chart === "loss" || chart === "accuracy" || chart === "lr") return shell.showTab("training");
    shell.showTab("inside");
    requestAnimationFrame(() => layerStats?.showChart(chart));
  };
  return [
    {
      id: "training",
      title: "Training",
      hint: "loss and accuracy curves, learning rate, the doctor's notes, the optimizer race",
      views: [
        // frozen / loaded layers of the run (transfer learning); hidden for every other run
        { name: "TransferBanner", wide: true, create: (r, c) => new TransferBanner(r, c) },
        { name: "LossCurves", wide: true, create: (r, c) => new LossCurves(r, c) },
        { name: "DoctorNotes", wide: true, create: (r, c) => new DoctorNotes(r, c, { onShowChart: showChart }) },
        { name: "OptimizerRace", wide: true, create: (r, c) => new OptimizerRace(r, c) },
      ],
    },
    {
      id: "inside",
      title: "Inside",
      hint: "activation, weight and gradient statistics per layer, update ratios, gradient check",
      views: [
        { name: "LayerStats", wide: true, create: (r, c) => (layerStats = new LayerStats(r, c)) },
        { name: "GradCheck", wide: true, create: (r, c) => new GradCheck(r, c) },
      ],
    },
    {
      id: "filters",
      title: "Filters & maps",
      hint: "convolution filters and the feature maps of one example",
      kinds: ["image"],
      views: [
        { name: "Filters", create: (r, c) => new Filters(r, c) },
        { name: "FeatureMaps", create: (r, c) => new FeatureMaps(r, c) },
      ],
    },
    {
      id: "attention",
      title: "Attention",
      hint: "saliency, Grad-CAM and attention masks: where the network looks; fooling it (FGSM)",
      kinds: ["image"],
      views: [
        { name: "Attention", wide: true, create: (r, c) => new Attention(r, c) },
        { name: "Fgsm", wide: true, create: (r, c) => new Fgsm(r, c) },
      ],
    },
    {
      id: "2d",
      title: "2D",
      hint: "decision boundary and what each neuron computes; backprop step by step",
      kinds: ["2d"],
      views: [
        { name: "Boundary2D", wide: true, create: (r, c) => new Boundary2D(r, c) },
        { name: "BackpropTrace", wide: true, create: (r, c) => new BackpropTrace(r, c) },
      ],
    },
    {
      id: "evaluation",
      title: "Evaluation",
      hint: "confusion matrix, misclassified examples, draw a digit",
      views: [
        { name: "Evaluation", create: (r, c) => new Evaluation(r, c) },
        { name: "DrawDigit", create: (r, c) => new DrawDigit(r, c) },
      ],
    },
    {
      id: "runs",
      title: "Runs",
      hint: "reopen a run, or compare it with earlier ones",
      views: [{ name: "RunsOverlay", wide: true, create: (r, c) => new RunsOverlay(r, c, { onOpen: (id) => shell.openRun(id) }) }],
    },
    {
      id: "search",
      title: "Search",
      hint: "hyperparameter search: random or grid over learning rate and l2 (log scale), coarse then fine",
      views: [{ name: "SearchView", wide: true, create: (r, c) => {
        const view = new SearchView(r, c, shell.search);
        shell.search.ready(view);
        return view;
      } }],
    },
  ];
}
