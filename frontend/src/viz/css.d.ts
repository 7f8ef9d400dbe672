// Side-effect CSS imports (uPlot's stylesheet, viz.css) are bundled by esbuild.
declare module "*.css";
