from mgnas.cli import main

raise SystemExit(main())
