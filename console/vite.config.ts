import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// Served by the query API under /console/ (query_api/console.py); every asset is bundled,
// nothing is loaded from elsewhere at run time.
export default defineConfig({
  base: "/console/",
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 1500 },
});
