// A small router over the History API: the console's pages are paths under its base
// (/console/runs/ID, …), which the query API answers with index.html.
import { useEffect, useState, type ReactNode, type MouseEvent } from "react";

const BASE = import.meta.env.BASE_URL.replace(/\/$/, "");

export function currentPath(): string {
  const p = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : "/";
  return p || "/";
}

export function navigate(path: string): void {
  history.pushState(null, "", BASE + path);
  window.dispatchEvent(new PopStateEvent("popstate"));
}

export function usePath(): string {
  const [path, setPath] = useState(currentPath());
  useEffect(() => {
    const on = () => setPath(currentPath());
    window.addEventListener("popstate", on);
    return () => window.removeEventListener("popstate", on);
  }, []);
  return path;
}

export function Link({ to, children, className }: { to: string; children: ReactNode; className?: string }) {
  const click = (e: MouseEvent) => {
    if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    navigate(to);
  };
  return (
    <a href={BASE + to} onClick={click} className={className}>
      {children}
    </a>
  );
}
